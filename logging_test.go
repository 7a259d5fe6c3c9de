package pgqrs

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// Logging: the library's warnings reach slog.Default() unless the Store or
// the loop is given a logger; silencing is explicit.

// capture is a slog.Handler keeping the records of one queue.
type capture struct {
	mu    sync.Mutex
	queue string
	recs  []map[string]any
	attrs []slog.Attr
}

func (c *capture) Enabled(context.Context, slog.Level) bool { return true }
func (c *capture) WithGroup(string) slog.Handler            { return c }
func (c *capture) WithAttrs(as []slog.Attr) slog.Handler {
	return &derived{c, slices.Concat(c.attrs, as)}
}
func (c *capture) Handle(ctx context.Context, r slog.Record) error { return c.handle(nil, r) }

func (c *capture) handle(attrs []slog.Attr, r slog.Record) error {
	m := map[string]any{"msg": r.Message, "level": r.Level.String()}
	for _, a := range attrs {
		m[a.Key] = a.Value.Any()
	}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.Any(); return true })
	if m["queue"] != c.queue {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, m)
	return nil
}

func (c *capture) find(msg string) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.recs {
		if r["msg"] == msg {
			return r
		}
	}
	return nil
}

type derived struct {
	c     *capture
	attrs []slog.Attr
}

func (d *derived) Enabled(context.Context, slog.Level) bool { return true }
func (d *derived) WithGroup(string) slog.Handler            { return d }
func (d *derived) WithAttrs(as []slog.Attr) slog.Handler {
	return &derived{d.c, slices.Concat(d.attrs, as)}
}
func (d *derived) Handle(ctx context.Context, r slog.Record) error { return d.c.handle(d.attrs, r) }

// failOnce runs a loop on a new queue whose handler fails the one message
// once, and waits for its archive.
func failOnce(t *testing.T, s *Store, queue string, o *RunOptions) (msgID, workerID int64) {
	t.Helper()
	p, c := fixture(t, s, queue)
	id := mustEnqueue(t, p, 1)
	ro := RunOptions{PollInterval: 10 * time.Millisecond, Backoff: func(int) time.Duration { return 0 }}
	if o != nil {
		ro.Logger = o.Logger
	}
	stop := inBackground(t, func(ctx context.Context) error {
		return c.Run(ctx, func(ctx context.Context, m *Message) error {
			if m.ReadCount == 1 {
				return errors.New("first try fails")
			}
			return nil
		}, &ro)
	})
	await(t, 20*time.Second, "the archive", func() bool { return metrics(t, s, queue).Archived == 1 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	return id, c.ID()
}

// Not parallel: it replaces slog.Default while it runs. On SQLite only:
// what is logged does not depend on the backend.
func TestLoggingDefaultsAndSilencing(t *testing.T) {
	old := slog.Default()
	t.Cleanup(func() { slog.SetDefault(old) })

	def := &capture{queue: "logged"}
	slog.SetDefault(slog.New(def))
	s := openBackend(t, "sqlite")
	if err := s.Admin().Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	id, worker := failOnce(t, s, "logged", nil)
	r := def.find("pgqrs: handler failed")
	if r == nil {
		t.Fatalf("no handler-failed warning reached slog.Default; got %v", def.recs)
	}
	if r["level"] != "WARN" || r["worker_id"] != worker || r["worker"] == nil || !slices.Equal(r["message_ids"].([]int64), []int64{id}) || r["err"] == nil {
		t.Errorf("warning %v: want level WARN, queue, worker, worker_id %d, message_ids [%d], err", r, worker, id)
	}

	// A Store silenced with WithLogger sends nothing to slog.Default; a
	// RunOptions.Logger overrides the Store's.
	quiet := &capture{queue: "quiet"}
	slog.SetDefault(slog.New(quiet))
	silent, err := Open(t.Context(), "sqlite:"+t.TempDir()+"/quiet.db", WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if err := silent.Admin().Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	failOnce(t, silent, "quiet", nil)
	if len(quiet.recs) != 0 {
		t.Errorf("a silenced Store logged to slog.Default: %v", quiet.recs)
	}
	own := &capture{queue: "quiet2"}
	failOnce(t, silent, "quiet2", &RunOptions{Logger: slog.New(own)})
	if own.find("pgqrs: handler failed") == nil {
		t.Errorf("RunOptions.Logger got no warning: %v", own.recs)
	}
	if _, err := Open(t.Context(), "sqlite::memory:", WithLogger(nil)); !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("WithLogger(nil): %v, want ErrInvalidArgument", err)
	}
}
