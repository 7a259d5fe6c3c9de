package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// TestFeedAnswersEachMessage hands 2,000 messages to eight concurrent takers,
// as Python's threads are: every handler gets the outcome given for its own
// message, successes and failures alike, and nothing is left taken.
func TestFeedAnswersEachMessage(t *testing.T) {
	f := newFeed()
	end := make(chan struct{})
	const n = 2000
	got := make([]error, n)
	var handlers sync.WaitGroup
	for i := range n {
		handlers.Go(func() {
			got[i] = f.handle(t.Context(), &pgqrs.Message{ID: int64(i)})
		})
	}
	var takers sync.WaitGroup
	for range 8 {
		takers.Go(func() {
			for {
				items, ended := f.take(3, 10*time.Millisecond, true, end)
				if ended {
					return
				}
				var outs []outcome
				for _, it := range items {
					o := outcome{Key: it.Key}
					if it.Msg.ID%3 == 0 {
						o.Error = &replyError{Type: "ValueError", Message: fmt.Sprint("bad ", it.Msg.ID)}
					}
					outs = append(outs, o)
				}
				if err := f.finish(outs); err != nil {
					t.Error(err)
				}
			}
		})
	}
	answered := make(chan struct{})
	go func() { handlers.Wait(); close(answered) }()
	select {
	case <-answered:
	case <-time.After(30 * time.Second):
		t.Fatal("handlers still waiting for their outcomes after 30s")
	}
	close(end)
	takers.Wait()
	for i, err := range got {
		var pe *pythonError
		switch {
		case i%3 != 0 && err != nil:
			t.Errorf("message %d: %v, want success", i, err)
		case i%3 == 0 && (!errors.As(err, &pe) || pe.msg != fmt.Sprint("bad ", i)):
			t.Errorf("message %d: %v, want its own ValueError", i, err)
		}
	}
	if len(f.taken) != 0 {
		t.Errorf("%d messages left taken", len(f.taken))
	}
	if err := f.finish([]outcome{{Key: 1 << 40}}); err == nil {
		t.Error("finish of an unknown key succeeded")
	}
}

// TestFeedGivesUpOnACancelledMessage: a message whose handler context ends
// before any thread takes it returns the context's cause and is never
// handed out.
func TestFeedGivesUpOnACancelledMessage(t *testing.T) {
	f := newFeed()
	ctx, cancel := context.WithCancelCause(t.Context())
	lost := errors.New("lease lost")
	done := make(chan error, 1)
	go func() { done <- f.handle(ctx, &pgqrs.Message{ID: 1}) }()
	cancel(lost)
	if err := <-done; !errors.Is(err, lost) {
		t.Fatalf("handle = %v, want the cause %v", err, lost)
	}
	if items, ended := f.take(10, 20*time.Millisecond, false, nil); len(items) != 0 || ended {
		t.Errorf("take = %v, %v; want nothing", items, ended)
	}
}
