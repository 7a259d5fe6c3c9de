// Command capi is the C boundary of the pgqrs Python package: built with
// `go build -buildmode=c-shared -o python/pgqrs/_lib/libpgqrs.so ./python/capi`
// (`make python`), loaded by python/pgqrs/_native.py with ctypes.
//
// The ABI is four functions:
//
//	char *pgqrs_call(const char *op, const char *args, size_t len, size_t *outlen);
//	void  pgqrs_free(void *p);
//	void  pgqrs_set_callback(pgqrs_callback cb);
//	void  pgqrs_reply(uint64_t call, const char *data, size_t len);
//
// pgqrs_call runs the operation op (a name such as "producer.enqueue") with
// JSON arguments and returns a JSON document, {"ok": result} or {"error":
// {"code": ..., "message": ...}}, in a buffer the caller frees with
// pgqrs_free. Go objects (stores, producers, consumers, running loops,
// workflow runs) are opaque uint64 handles into a table on the Go side; no
// Go pointer ever reaches C. Every exported function recovers panics and
// reports them as an InternalError.
//
// Queue handlers are not called from Go: consumer.run starts the Run loop
// and Python's own threads take its messages in batches (job.take) and
// report each message's outcome (job.done), so a batch crosses the boundary
// twice whatever its size (see feed.go). Workflow bodies and steps written
// in Python are called through one callback, pgqrs_callback(call, data,
// len), with a JSON document naming the Python object (its token) and its
// arguments; Python answers with pgqrs_reply(call, ...) before returning.
// ctypes releases the GIL during pgqrs_call and takes it in the callback, so
// Go threads may call into Python while other Python threads wait in Go.
package main

/*
#include <stdint.h>
#include <stdlib.h>
typedef int (*pgqrs_callback)(uint64_t call, const char *data, size_t len);
void pgqrs_store_callback(pgqrs_callback cb);
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"runtime/debug"
	"unsafe"
)

func main() {}

//export pgqrs_call
func pgqrs_call(op *C.char, args *C.char, argsLen C.size_t, outLen *C.size_t) (out *C.char) {
	var doc []byte
	defer func() {
		if r := recover(); r != nil {
			doc = errorJSON(&internalError{msg: fmt.Sprintf("panic: %v\n%s", r, debug.Stack())})
		}
		*outLen = C.size_t(len(doc))
		out = (*C.char)(C.CBytes(doc))
	}()
	name := C.GoString(op)
	var in []byte
	if args != nil && argsLen > 0 {
		in = C.GoBytes(unsafe.Pointer(args), C.int(argsLen))
	}
	doc = dispatch(name, in)
	return nil
}

//export pgqrs_free
func pgqrs_free(p unsafe.Pointer) {
	defer func() { _ = recover() }()
	C.free(p)
}

//export pgqrs_set_callback
func pgqrs_set_callback(cb C.pgqrs_callback) {
	defer func() { _ = recover() }()
	C.pgqrs_store_callback(cb)
}

//export pgqrs_reply
func pgqrs_reply(call C.uint64_t, data *C.char, n C.size_t) {
	defer func() { _ = recover() }()
	var b []byte
	if data != nil && n > 0 {
		b = C.GoBytes(unsafe.Pointer(data), C.int(n))
	}
	calls.reply(uint64(call), b)
}

// dispatch runs one operation and renders its result.
func dispatch(name string, in []byte) []byte {
	fn, ok := ops[name]
	if !ok {
		return errorJSON(&internalError{msg: fmt.Sprintf("unknown operation %q", name)})
	}
	v, err := fn(in)
	if err != nil {
		return errorJSON(err)
	}
	b, err := json.Marshal(struct {
		OK any `json:"ok"`
	}{v})
	if err != nil {
		return errorJSON(&internalError{msg: "encode result: " + err.Error()})
	}
	return b
}

func errorJSON(err error) []byte {
	b, _ := json.Marshal(struct {
		Error errorDoc `json:"error"`
	}{docOf(err)})
	return b
}
