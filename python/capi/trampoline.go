package main

/*
#include <stdint.h>
#include <stdlib.h>
typedef int (*pgqrs_callback)(uint64_t call, const char *data, size_t len);

static pgqrs_callback pgqrs_cb;

void pgqrs_store_callback(pgqrs_callback cb) { pgqrs_cb = cb; }

// pgqrs_invoke is the trampoline Go calls: cgo cannot call a C function
// pointer directly.
static int pgqrs_invoke(uint64_t call, const char *data, size_t len) {
	pgqrs_callback cb = pgqrs_cb;
	if (!cb) return -1;
	return cb(call, data, len);
}
*/
import "C"

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/pgqrs/pgqrs-go"
)

// Results of the callback.
const (
	cbOK    = 0 // success, no reply
	cbReply = 1 // pgqrs_reply was called with the outcome
)

// callTable holds the replies of callbacks in progress.
type callTable struct {
	next    atomic.Uint64
	mu      sync.Mutex
	replies map[uint64][]byte
}

var calls = &callTable{replies: map[uint64][]byte{}}

func (t *callTable) reply(call uint64, b []byte) {
	t.mu.Lock()
	if _, ok := t.replies[call]; ok {
		t.replies[call] = b
	}
	t.mu.Unlock()
}

// reply is what Python answers a callback with.
type reply struct {
	OK    json.RawMessage `json:"ok"`
	Error *replyError     `json:"error"`
}

type replyError struct {
	Type       string  `json:"type"`    // the exception's class
	Message    string  `json:"message"` // its text
	Kind       string  `json:"kind"`    // "permanent", "transient" or ""
	RetryAfter float64 `json:"retry_after"`
	GoID       uint64  `json:"go"` // the Go error the exception stands for
}

// callPython invokes the Python callback with data and returns its result:
// the JSON of its "ok", or the error its exception stands for. errs, if not
// nil, resolves exceptions that carry a Go error back to that error.
func callPython(data []byte, errs *errTable) (json.RawMessage, error) {
	id := calls.next.Add(1)
	calls.mu.Lock()
	calls.replies[id] = nil
	calls.mu.Unlock()
	var p *C.char
	if len(data) > 0 {
		p = (*C.char)(unsafe.Pointer(&data[0]))
	}
	rc := C.pgqrs_invoke(C.uint64_t(id), p, C.size_t(len(data)))
	calls.mu.Lock()
	b := calls.replies[id]
	delete(calls.replies, id)
	calls.mu.Unlock()
	switch rc {
	case cbOK:
		return nil, nil
	case cbReply:
	case -1:
		return nil, &internalError{msg: "no Python callback is installed"}
	default:
		return nil, &internalError{msg: fmt.Sprintf("the Python callback failed (code %d)", int(rc))}
	}
	var r reply
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, &internalError{msg: "decode the reply of a Python callback: " + err.Error()}
	}
	if r.Error == nil {
		return r.OK, nil
	}
	return nil, r.Error.err(errs)
}

// err is the Go error an exception stands for: the Go error it carries
// (resolved through errs), else a pythonError, marked permanent or
// transient as the exception was.
func (e *replyError) err(errs *errTable) error {
	if e.GoID != 0 && errs != nil {
		if orig := errs.get(e.GoID); orig != nil {
			return orig
		}
	}
	var err error = &pythonError{typ: e.Type, msg: e.Message}
	switch e.Kind {
	case "permanent":
		err = pgqrs.Permanent(err)
	case "transient":
		err = &pgqrs.TransientError{Err: err, RetryAfter: seconds(e.RetryAfter)}
	}
	return err
}

// pythonError is an exception raised by Python code, as Go sees it.
type pythonError struct{ typ, msg string }

func (e *pythonError) Error() string {
	if e.typ == "" {
		return e.msg
	}
	if e.msg == "" {
		return e.typ
	}
	return e.typ + ": " + e.msg
}

// errTable keeps the Go errors handed to Python during one workflow
// execution, so that an exception carrying one resolves back to it.
type errTable struct {
	mu   sync.Mutex
	errs map[uint64]error
}

var errSeq atomic.Uint64

func (t *errTable) keep(err error) error {
	if t == nil || err == nil {
		return err
	}
	id := errSeq.Add(1)
	t.mu.Lock()
	if t.errs == nil {
		t.errs = map[uint64]error{}
	}
	t.errs[id] = err
	t.mu.Unlock()
	return &keptError{err: err, id: id}
}

func (t *errTable) get(id uint64) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.errs[id]
}

// keptError is an error with the ID Python sends back.
type keptError struct {
	err error
	id  uint64
}

func (e *keptError) Error() string { return e.err.Error() }
func (e *keptError) Unwrap() error { return e.err }

func keptID(err error) uint64 {
	var k *keptError
	if errors.As(err, &k) {
		return k.id
	}
	return 0
}

func seconds(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }
