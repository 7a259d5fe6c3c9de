package pgqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// Typed handlers (HandlerFor) and handlers' Permanent errors in the Run
// loop.

// deliveries counts the deliveries of each message ID.
type deliveries struct {
	mu sync.Mutex
	n  map[int64]int
}

func (d *deliveries) add(id int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.n == nil {
		d.n = map[int64]int{}
	}
	d.n[id]++
}

func (d *deliveries) of(id int64) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.n[id]
}

// awaitDead waits for message id of queue to be a dead letter and returns it.
func awaitDead(t *testing.T, s *Store, queue string, id int64) *ArchivedMessage {
	t.Helper()
	var m *ArchivedMessage
	await(t, 20*time.Second, fmt.Sprintf("dead letter %d", id), func() bool {
		var err error
		m, err = s.Admin().GetArchived(t.Context(), queue, id)
		return err == nil && m.Dead
	})
	return m
}

func TestHandlerFor(t *testing.T) {
	t.Parallel()
	type email struct {
		To      string `json:"to"`
		Retries int    `json:"retries"`
	}
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "emails")
		good := mustEnqueue(t, p, email{To: "ada@example.com", Retries: 2})
		notAnObject := mustEnqueue(t, p, "just text")
		wrongType := mustEnqueue(t, p, map[string]any{"to": 42})
		var seen deliveries
		got := make(chan email, 3)
		typed := HandlerFor(func(ctx context.Context, m *Message, e email) error {
			got <- e
			return nil
		})
		// Failures would be retried at once, five times, were they not
		// permanent.
		runInBackground(t, c, func(ctx context.Context, m *Message) error {
			seen.add(m.ID)
			return typed(ctx, m)
		}, &RunOptions{PollInterval: 20 * time.Millisecond, Backoff: func(int) time.Duration { return 0 },
			Logger: slog.New(slog.DiscardHandler)})
		select {
		case e := <-got:
			if e != (email{To: "ada@example.com", Retries: 2}) {
				t.Errorf("decoded %+v", e)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("the typed handler got nothing")
		}
		for _, id := range []int64{notAnObject, wrongType} {
			m := awaitDead(t, s, "emails", id)
			if !strings.Contains(m.LastError, "decode payload of message") || !strings.Contains(m.LastError, "email") {
				t.Errorf("dead letter %d's last error = %q, want the decode error", id, m.LastError)
			}
			if m.ReadCount != 1 || seen.of(id) != 1 {
				t.Errorf("undecodable message %d: read count %d, %d deliveries; want one", id, m.ReadCount, seen.of(id))
			}
		}
		await(t, 20*time.Second, "the good message's archive", func() bool {
			m, err := s.Admin().GetArchived(t.Context(), "emails", good)
			return err == nil && !m.Dead
		})
		if len(got) != 0 {
			t.Errorf("the typed function ran for an undecodable payload: %+v", <-got)
		}
	})
}

func TestRunDeadLettersPermanentErrorsAtOnce(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "q")
		plain := mustEnqueue(t, p, "plain")
		wrapped := mustEnqueue(t, p, "wrapped")
		retried := mustEnqueue(t, p, "retried")
		var seen deliveries
		runInBackground(t, c, func(ctx context.Context, m *Message) error {
			seen.add(m.ID)
			switch m.ID {
			case plain:
				return Permanent(errors.New("bad input"))
			case wrapped:
				return fmt.Errorf("charging: %w", Permanent(errors.New("card refused")))
			case retried:
				if seen.of(m.ID) < 2 {
					return errors.New("try again")
				}
			}
			return nil
		}, &RunOptions{PollInterval: 20 * time.Millisecond, Backoff: func(int) time.Duration { return 0 },
			Logger: slog.New(slog.DiscardHandler)})
		for id, text := range map[int64]string{plain: "bad input", wrapped: "charging: card refused"} {
			m := awaitDead(t, s, "q", id)
			if m.LastError != text || m.ReadCount != 1 || seen.of(id) != 1 {
				t.Errorf("dead letter %d: last error %q, read count %d, %d deliveries; want %q after one", id, m.LastError, m.ReadCount, seen.of(id), text)
			}
		}
		// A plain error is still retried.
		await(t, 20*time.Second, "the retried message's archive", func() bool {
			m, err := s.Admin().GetArchived(t.Context(), "q", retried)
			return err == nil && !m.Dead && m.ReadCount == 2
		})
	})
}
