package pgqrs

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunRunsAMessageClaimedAgainDuringItsGiveBack holds the Run loop
// between a failed delivery's give-back and the moment it forgets the
// message, until its own claim loop has claimed the message again. That new
// delivery must run; before the fix the loop dropped it as a duplicate and
// then forgot it, so the message sat leased, unhandled, until its lease
// expired (issue 10, item 1).
func TestRunRunsAMessageClaimedAgainDuringItsGiveBack(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "regive")
		mustEnqueue(t, p, "x")
		var once sync.Once
		var claims atomic.Int64
		claimedAgain := make(chan struct{})
		reclaimed := make(chan bool, 1)
		s.hooks = &testHooks{
			afterClaim: func([]int64) {
				if claims.Add(1) == 2 {
					close(claimedAgain)
				}
			},
			afterGiveBack: func([]int64) {
				once.Do(func() {
					// The message is visible again (no backoff) and the claim
					// loop polls every 10ms: wait until it has claimed and
					// recorded the message again.
					select {
					case <-claimedAgain:
						reclaimed <- true
					case <-time.After(10 * time.Second):
						reclaimed <- false
					}
				})
			},
		}
		var calls atomic.Int64
		second := make(chan struct{})
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			if calls.Add(1) == 1 {
				return errors.New("first attempt fails")
			}
			close(second)
			return nil
		}, &RunOptions{VisibilityTimeout: time.Minute, PollInterval: 10 * time.Millisecond,
			Backoff: func(int) time.Duration { return 0 }})
		if !<-reclaimed {
			t.Fatal("the loop did not claim the given-back message again while it was being given back")
		}
		select {
		case <-second:
		case <-time.After(15 * time.Second):
			t.Fatal("the delivery claimed during the give-back never ran (it waits for its one-minute lease to expire)")
		}
		await(t, 10*time.Second, "the archive", func() bool {
			n, _ := s.Admin().CountArchived(t.Context(), "regive")
			return n == 1
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// levelRecorder is a slog.Handler that keeps the records at or above min.
type levelRecorder struct {
	min  slog.Level
	mu   sync.Mutex
	recs []string
}

func (h *levelRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= h.min }
func (h *levelRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Level.String()+" "+r.Message)
	return nil
}
func (h *levelRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *levelRecorder) WithGroup(string) slog.Handler      { return h }
func (h *levelRecorder) records() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.recs...)
}

// TestRunHandlerThatArchivesInItsOwnTx: the pattern the README recommends
// (record the result and ArchiveTx in one transaction, return nil) is a
// success. Lease extensions that land after the handler's commit must not
// cancel it, and the loop's own archive must not warn about a lost lease
// (issue 10, item 9).
func TestRunHandlerThatArchivesInItsOwnTx(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "selfack")
		const total = 4
		for i := range total {
			mustEnqueue(t, p, i)
		}
		logs := &levelRecorder{min: slog.LevelWarn}
		const vt = 300 * time.Millisecond // extensions every 100ms
		var done, cancelled atomic.Int64
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			tx, err := s.DB().BeginTx(ctx, nil)
			if err != nil {
				return err
			}
			if err := c.ArchiveTx(ctx, tx, m.ID); err != nil {
				tx.Rollback()
				return err
			}
			if err := tx.Commit(); err != nil {
				return err
			}
			// Finish slowly after the commit: several lease extensions run
			// now and find the message gone.
			select {
			case <-ctx.Done():
				cancelled.Add(1)
			case <-time.After(3 * vt):
			}
			done.Add(1)
			return nil
		}, &RunOptions{Concurrency: 2, VisibilityTimeout: vt, PollInterval: 10 * time.Millisecond,
			Logger: slog.New(logs)})
		await(t, 30*time.Second, "every handler done", func() bool { return done.Load() == total })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if n := cancelled.Load(); n != 0 {
			t.Errorf("%d handlers had their context cancelled after archiving their own message", n)
		}
		if recs := logs.records(); len(recs) != 0 {
			t.Errorf("warnings or errors logged for handlers that archived their own messages:\n%q", recs)
		}
		m := metrics(t, s, "selfack")
		if m.Archived != total || m.Pending+m.Leased != 0 {
			t.Errorf("metrics = %+v; want %d archived, none left", m, total)
		}
		got, err := s.Admin().ListArchived(t.Context(), "selfack", ArchivePage{})
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range got {
			if a.LastError != "" || a.ReadCount != 1 {
				t.Errorf("archived %d: read count %d, last error %q; want one clean delivery", a.ID, a.ReadCount, a.LastError)
			}
		}
	})
}

// TestRunLogsToSlogDefault: with no Logger, a handler panic reaches
// slog.Default, not a discarding logger (issue 10, ergonomics).
func TestRunLogsToSlogDefault(t *testing.T) {
	rec := &levelRecorder{min: slog.LevelWarn}
	old := slog.Default()
	slog.SetDefault(slog.New(rec))
	t.Cleanup(func() { slog.SetDefault(old) })
	forEachBackendSerial(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "deflog")
		mustEnqueue(t, p, "x")
		handled := make(chan struct{})
		var once sync.Once
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			defer once.Do(func() { close(handled) })
			panic("handler bug")
		}, &RunOptions{PollInterval: 10 * time.Millisecond, Backoff: func(int) time.Duration { return time.Hour }})
		<-handled
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, r := range rec.records() {
			found = found || r == "ERROR pgqrs: handler panicked"
		}
		if !found {
			t.Errorf("slog.Default got %q; want the handler panic", rec.records())
		}
	})
}
