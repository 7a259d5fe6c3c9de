package main

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// A feed hands the messages of a Consumer.Run loop to Python threads, which
// take them in batches (job.take) and report each outcome (job.done). The
// handler Run calls for a message waits until a Python thread has taken it
// and answered, so Run's semantics hold message by message (an error is
// that message's retry or dead letter, a success its archive), while Python
// crosses into Go twice per batch rather than being called once per message
// from a Go thread (which costs a Python thread state and a GIL handoff each
// time).
type feed struct {
	ch    chan *handoff
	mu    sync.Mutex
	next  uint64
	taken map[uint64]*handoff
}

// handoff is one message on its way to Python and back.
type handoff struct {
	ctx  context.Context
	msg  *pgqrs.Message
	done chan error
}

func newFeed() *feed { return &feed{ch: make(chan *handoff), taken: map[uint64]*handoff{}} }

// handle is the Handler of the Run loop.
func (f *feed) handle(ctx context.Context, m *pgqrs.Message) error {
	h := &handoff{ctx: ctx, msg: m, done: make(chan error, 1)}
	select {
	case f.ch <- h:
	case <-ctx.Done():
		// Never taken: the lease was lost, or the grace period is over.
		return context.Cause(ctx)
	}
	// Taken: Python runs it and answers, whatever ctx does.
	return <-h.done
}

// taken is one message as job.take hands it out: a key for job.done and
// the message.
type takenItem struct {
	Key uint64         `json:"k"`
	Msg *pgqrs.Message `json:"m"`
}

// take waits up to wait for a first message and returns it with those
// ready at once behind it, at most max; ended says the loop has returned and
// nothing more will come. With linger it also yields a few times for
// messages about to arrive: several takers then each leave with a share
// rather than one message apiece, while a single taker does better to
// start on what it has as Go fetches the rest.
func (f *feed) take(max int, wait time.Duration, linger bool, end <-chan struct{}) (items []takenItem, ended bool) {
	add := func(h *handoff) {
		if h.ctx.Err() != nil {
			h.done <- context.Cause(h.ctx)
			return
		}
		f.mu.Lock()
		f.next++
		key := f.next
		f.taken[key] = h
		f.mu.Unlock()
		items = append(items, takenItem{Key: key, Msg: h.msg})
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case h := <-f.ch:
		add(h)
	case <-end:
		return nil, true
	case <-t.C:
		return nil, false
	}
	// The messages of a claim reach the channel one handler goroutine at a
	// time.
	tries := 1
	if linger {
		tries = 4
	}
	for idle := 0; len(items) < max && idle < tries; {
		select {
		case h := <-f.ch:
			add(h)
			idle = 0
		default:
			if idle++; idle < tries {
				runtime.Gosched()
			}
		}
	}
	return items, false
}

// outcome is Python's answer for one taken message: no error is success.
type outcome struct {
	Key   uint64      `json:"k"`
	Error *replyError `json:"e"`
}

// finish applies the outcomes. An unknown key is an error of the binding.
func (f *feed) finish(outs []outcome) error {
	var unknown []uint64
	for _, o := range outs {
		f.mu.Lock()
		h := f.taken[o.Key]
		delete(f.taken, o.Key)
		f.mu.Unlock()
		if h == nil {
			unknown = append(unknown, o.Key)
			continue
		}
		var err error
		if o.Error != nil {
			err = o.Error.err(nil)
		}
		h.done <- err
	}
	if len(unknown) > 0 {
		return &internalError{msg: fmt.Sprintf("job.done: no message taken with keys %v", unknown)}
	}
	return nil
}

var feedOps = map[string]op{
	"job.take": func(in []byte) (any, error) {
		a, err := args[struct {
			J       uint64  `json:"j"`
			Max     int     `json:"max"`
			Timeout float64 `json:"timeout"`
			Linger  bool    `json:"linger"`
		}](in)
		if err != nil {
			return nil, err
		}
		j, err := fedJob(a.J)
		if err != nil {
			return nil, err
		}
		items, ended := j.feed.take(max(a.Max, 1), seconds(a.Timeout), a.Linger, j.done)
		return struct {
			End   bool        `json:"end"`
			Items []takenItem `json:"m"`
		}{ended, items}, nil
	},
	"job.done": func(in []byte) (any, error) {
		a, err := args[struct {
			J    uint64    `json:"j"`
			Outs []outcome `json:"r"`
		}](in)
		if err != nil {
			return nil, err
		}
		j, err := fedJob(a.J)
		if err != nil {
			return nil, err
		}
		return nil, j.feed.finish(a.Outs)
	},
}

// fedJob is the running loop with handle h that hands messages to Python.
func fedJob(h uint64) (*job, error) {
	j, err := lookup[*job](h, "running loop")
	if err == nil && j.feed == nil {
		err = fmt.Errorf("%w: loop %d hands out no messages", pgqrs.ErrInvalidArgument, h)
	}
	return j, err
}
