package pgqrs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
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

// setHolder makes consumer worker holder (0: none) the holder of message id,
// as a lease that ran out and was claimed by that worker would. It reports
// a failure with t.Errorf, so hooks on other goroutines may call it.
func setHolder(t *testing.T, s *Store, id, holder int64) {
	t.Helper()
	h := "NULL"
	if holder != 0 {
		h = fmt.Sprint(holder)
	}
	stmt := s.d.qualify(fmt.Sprintf("UPDATE pgqrs_messages SET consumer_worker_id = %s WHERE id = %d", h, id))
	if _, err := s.DB().ExecContext(t.Context(), stmt); err != nil {
		t.Errorf("set holder of %d: %v", id, err)
	}
}

// TestRunKeepsADeliveryItClaimedAgain: an extension finds a running
// message held by another consumer, and before the loop looks at who holds
// it, the loop itself holds it again (the other gave it back and this loop
// claimed it; track keeps the running delivery). The delivery is the loop's:
// its handler must not be cancelled as if the lease were lost, and its
// success must archive the message. Before the fix the loop asked only
// whether the message still existed and cancelled the handler.
func TestRunKeepsADeliveryItClaimedAgain(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "reheld")
		other, err := s.Consumer(t.Context(), "reheld")
		if err != nil {
			t.Fatal(err)
		}
		id := mustEnqueue(t, p, "x")
		var once, sortedOnce sync.Once
		sorted := make(chan struct{})
		s.hooks = &testHooks{
			afterMissedExtension: func([]int64) { once.Do(func() { setHolder(t, s, id, c.id) }) },
			afterSortMissed:      func([]int64) { sortedOnce.Do(func() { close(sorted) }) },
		}
		started := make(chan context.Context, 1)
		release := make(chan struct{})
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			started <- ctx
			<-release
			return nil
		}, &RunOptions{VisibilityTimeout: 600 * time.Millisecond, PollInterval: time.Hour})
		var hctx context.Context
		select {
		case hctx = <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the handler never started")
		}
		setHolder(t, s, id, other.id)
		select {
		case <-sorted:
		case <-time.After(10 * time.Second):
			t.Fatal("no lease extension missed the message another consumer held")
		}
		if err := hctx.Err(); err != nil {
			t.Errorf("the handler of a delivery the loop holds again was cancelled: %v", context.Cause(hctx))
		}
		close(release)
		await(t, 10*time.Second, "the archive", func() bool {
			n, _ := s.Admin().CountArchived(t.Context(), "reheld")
			return n == 1
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRunBatchLostLeaseGivesBackTheRest: a batch handler is cancelled
// because another consumer took one of its messages. The others are still
// this loop's, and their failure is the loop's doing: they go back visible
// now with the delivery uncounted and no error recorded, not released as
// failures. Before the fix they were released with the cancellation as
// their error and an attempt used.
func TestRunBatchLostLeaseGivesBackTheRest(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "batchlost")
		other, err := s.Consumer(t.Context(), "batchlost")
		if err != nil {
			t.Fatal(err)
		}
		lost, kept := mustEnqueue(t, p, 1), mustEnqueue(t, p, 2)
		givenBack := make(chan []int64, 1)
		s.hooks = &testHooks{afterGiveBack: func(ids []int64) { givenBack <- ids }}
		started := make(chan struct{}, 1)
		stop := inBackground(t, func(ctx context.Context) error {
			return c.RunBatch(ctx, func(ctx context.Context, ms []*Message) error {
				started <- struct{}{}
				<-ctx.Done()
				return ctx.Err()
			}, &RunOptions{BatchSize: 2, VisibilityTimeout: 600 * time.Millisecond, PollInterval: time.Hour,
				Backoff: func(int) time.Duration { return 0 }})
		})
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the batch handler never started")
		}
		setHolder(t, s, lost, other.id)
		select {
		case ids := <-givenBack:
			if diff := cmp.Diff([]int64{kept}, ids); diff != "" {
				t.Errorf("given back (-want +got):\n%s", diff)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the batch was never given back")
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		third, err := s.Consumer(t.Context(), "batchlost")
		if err != nil {
			t.Fatal(err)
		}
		msgs := awaitDequeue(t, third, 1, 10*time.Second)
		if len(msgs) != 1 || msgs[0].ID != kept {
			t.Fatalf("dequeued %v; want message %d only (%d is the other consumer's)", msgIDs(msgs), kept, lost)
		}
		if m := msgs[0]; m.ReadCount != 1 || m.LastError != "" {
			t.Errorf("the given-back message has read count %d and last error %q; want 1 and none (the interrupted delivery is uncounted)", m.ReadCount, m.LastError)
		}
	})
}

// TestRunRenewalPastMaxAttemptsIsNoNewDelivery: the lease of a running
// message runs out and the loop claims it again itself, which only renews
// the lease of the delivery still running (track). Its read count now
// exceeds MaxAttempts, but it is the same delivery: it must not be
// dead-lettered under its handler, and the handler's success archives it.
// Before the fix the claim dead-lettered it while its handler ran.
func TestRunRenewalPastMaxAttemptsIsNoNewDelivery(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "renewed")
		id := mustEnqueue(t, p, "x")
		var claims atomic.Int64
		reclaimed := make(chan struct{})
		s.hooks = &testHooks{afterClaim: func([]int64) {
			if claims.Add(1) == 2 {
				close(reclaimed)
			}
		}}
		started := make(chan struct{})
		release := make(chan struct{})
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error {
			close(started)
			<-release
			return nil
		}, &RunOptions{Concurrency: 2, MaxAttempts: 1, VisibilityTimeout: time.Minute, PollInterval: 10 * time.Millisecond})
		select {
		case <-started:
		case <-time.After(10 * time.Second):
			t.Fatal("the handler never started")
		}
		// The lease runs out (as when extensions failed for a whole lease).
		param := "?1"
		if s.Dialect() == Postgres {
			param = "$1"
		}
		if _, err := s.DB().ExecContext(t.Context(), s.d.qualify("UPDATE pgqrs_messages SET vt = "+param+" WHERE id = "+fmt.Sprint(id)),
			s.d.timeArg(time.Now().Add(-time.Hour))); err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "the loop's claim of the message whose lease ran out", func() bool {
			select {
			case <-reclaimed:
				return true
			default:
			}
			n, _ := s.Admin().CountDeadLetters(t.Context(), "renewed")
			return n > 0 // the claim dead-lettered it instead
		})
		if n, err := s.Admin().CountDeadLetters(t.Context(), "renewed"); err != nil || n != 0 {
			t.Errorf("dead letters %d, %v; want 0: the renewed delivery is still running", n, err)
		}
		close(release)
		await(t, 10*time.Second, "the archive", func() bool {
			n, _ := s.Admin().CountArchived(t.Context(), "renewed")
			return n == 1
		})
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRunAbandonedHandlerCannotSettleALaterRun: a handler that ignores its
// cancelled context is abandoned when its Run is interrupted. The worker is
// resumed and a new Run of the same consumer claims the message again after
// its lease ran out. When the abandoned handler finally fails, its outcome
// must be dropped: a release fenced on the consumer would give back the new
// Run's delivery while its handler runs. Before the fix it did.
func TestRunAbandonedHandlerCannotSettleALaterRun(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "abandon")
		id := mustEnqueue(t, p, "x")
		outcome := make(chan string, 2)
		s.hooks = &testHooks{
			afterGiveBack:      func([]int64) { outcome <- "given back" },
			afterDropAbandoned: func([]int64) { outcome <- "dropped" },
			abandonWait:        200 * time.Millisecond,
		}
		var calls atomic.Int64
		started := make(chan int64, 2)
		releaseFirst, releaseSecond := make(chan struct{}), make(chan struct{})
		defer close(releaseSecond)
		handler := func(ctx context.Context, m *Message) error {
			n := calls.Add(1)
			started <- n
			if n == 1 {
				<-releaseFirst // ignores ctx
				return errors.New("late failure of an abandoned handler")
			}
			select {
			case <-releaseSecond:
			case <-ctx.Done():
			}
			return nil
		}
		opts := &RunOptions{VisibilityTimeout: time.Second, PollInterval: 20 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond,
			ShutdownTimeout: 50 * time.Millisecond, Backoff: func(int) time.Duration { return 0 }}
		first := make(chan error, 1)
		go func() { first <- c.Run(ctx, handler, opts) }()
		if n := <-started; n != 1 {
			t.Fatalf("call %d started first", n)
		}
		w := &worker{s: s, id: c.ID(), name: c.Name()}
		if err := w.Interrupt(ctx); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-first:
			wantErr(t, err, ErrInterrupted)
		case <-time.After(30 * time.Second):
			t.Fatal("the interrupted Run did not return")
		}
		if err := c.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		stop := runInBackground(t, c, handler, opts)
		select {
		case <-started: // the message's lease ran out; the new Run holds it
		case <-time.After(15 * time.Second):
			t.Fatalf("the new Run never got the message (Run: %v)", stop())
		}
		close(releaseFirst)
		select {
		case got := <-outcome:
			if got != "dropped" {
				t.Errorf("the abandoned handler's failure was %s; want dropped", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the abandoned handler's outcome never came")
		}
		holders, err := s.messages.holders(ctx, s.pool, []int64{id}, c.queueID)
		if err != nil || holders[id] != c.ID() {
			t.Errorf("holder of %d = %d, %v; want the new Run's consumer %d", id, holders[id], err, c.ID())
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// TestRunWithCancelledContextStopsCleanly: a Run whose ctx is already done
// (or is cancelled during its first statement) is a clean shutdown: nil,
// and the worker ends stopped. Before the fix the first transition failed
// with the ctx error and left the worker row as it was.
func TestRunWithCancelledContextStopsCleanly(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		_, c := fixture(t, s, "cancelled")
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := c.Run(ctx, func(context.Context, *Message) error { return nil }, nil); err != nil {
			t.Fatalf("Run with a cancelled ctx = %v, want nil", err)
		}
		if st, err := c.Status(t.Context()); err != nil || st != WorkerStopped {
			t.Errorf("worker after Run = %s, %v; want stopped", st, err)
		}
	})
}
