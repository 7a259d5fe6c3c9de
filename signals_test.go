package pgqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// slowPoll makes a test prove that a run is woken, not found by a poll.
var slowPoll = &RunOptions{Concurrency: 4, PollInterval: time.Minute}

func mailbox(t *testing.T, s *Store, id int64) *Mailbox {
	t.Helper()
	m, err := s.Runs().Mailbox(t.Context(), id)
	if err != nil {
		t.Fatalf("mailbox of run %d: %v", id, err)
	}
	return m
}

// awaitRecvWait waits until run id is suspended in a Recv on its workflow's
// queue: its wait recorded, its message given back, no worker holding it.
func awaitRecvWait(t *testing.T, s *Store, queue string, id int64, topic string) {
	t.Helper()
	await(t, 20*time.Second, fmt.Sprintf("run %d to wait for %q holding no worker", id, topic), func() bool {
		w := mailbox(t, s, id).Waiting
		m := metrics(t, s, queue)
		return len(w) == 1 && w[0].Topic == topic && m.Leased == 0 && m.Delayed == 1
	})
}

// receipts summarizes a run's signals: topic/payload and the step that
// received each.
func receipts(m *Mailbox) []string {
	out := []string{}
	for _, sig := range m.Signals {
		out = append(out, fmt.Sprintf("%s:%s→%s", sig.Topic, sig.Payload, sig.ReceivedBy))
	}
	return out
}

func TestSignalSentBeforeRecv(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("approve", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			v, ok, err := Recv[string](ctx, run, "approval", "decision", time.Hour)
			if err != nil || !ok {
				return "", fmt.Errorf("ok %v: %w", ok, err)
			}
			return v, nil
		})
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Runs().Send(ctx, id, "decision", "yes"); err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		got, err := waitResult(t, s, wf, id)
		if err != nil || got != "yes" {
			t.Fatalf("result %q, %v; want yes", got, err)
		}
		m := mailbox(t, s, id)
		if diff := cmp.Diff([]string{`decision:"yes"→approval`}, receipts(m)); diff != "" {
			t.Errorf("signals (-want +got):\n%s", diff)
		}
		if len(m.Waiting) != 0 || m.Signals[0].ReceivedAt.IsZero() || m.Signals[0].SentAt.IsZero() {
			t.Errorf("mailbox = %+v", m)
		}
		steps := runStatus(t, s, id).Steps
		if len(steps) != 1 || steps[0].Name != "approval" || !strings.Contains(string(steps[0].Output), `"yes"`) {
			t.Errorf("steps = %+v", steps)
		}
	})
}

func TestSignalWakesAWaitingRun(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var before atomic.Int64
		wf := NewWorkflow("waiter", func(ctx context.Context, run *Run, _ struct{}) (int, error) {
			if _, err := Step(ctx, run, "before", func(context.Context) (int, error) { return int(before.Add(1)), nil }); err != nil {
				return 0, err
			}
			v, ok, err := Recv[int](ctx, run, "wait", "go", time.Hour)
			if err != nil {
				return 0, err
			}
			if !ok {
				return 0, errors.New("timed out")
			}
			return v, nil
		})
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, slowPoll)
		awaitRecvWait(t, s, "waiter", id, "go")
		if st := runStatus(t, s, id).Status; st != RunRunning {
			t.Errorf("status while waiting = %s, want RUNNING", st)
		}
		sent := time.Now()
		if err := s.Runs().Send(ctx, id, "go", 42); err != nil {
			t.Fatal(err)
		}
		got, err := waitResult(t, s, wf, id)
		if err != nil || got != 42 {
			t.Fatalf("result %d, %v; want 42", got, err)
		}
		// Woken, not polled: the poll interval is a minute.
		if d := time.Since(sent); d > 20*time.Second {
			t.Errorf("the run resumed %v after the send", d)
		}
		if before.Load() != 1 {
			t.Errorf("the step before the Recv ran %d times", before.Load())
		}
	})
}

func TestSignalsInOrderPerTopicAndIsolated(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("inbox", func(ctx context.Context, run *Run, n int) ([]string, error) {
			var got []string
			for i := range n {
				v, ok, err := Recv[string](ctx, run, fmt.Sprintf("jobs/%d", i), "jobs", time.Hour)
				if err != nil {
					return nil, err
				}
				if !ok {
					return nil, errors.New("timed out")
				}
				got = append(got, v)
			}
			// Nothing more on "jobs": a timeout of 0 does not wait.
			if _, ok, err := Recv[string](ctx, run, "jobs/none", "jobs", 0); err != nil || ok {
				return nil, fmt.Errorf("an extra job: ok %v, %v", ok, err)
			}
			other, ok, err := Recv[string](ctx, run, "other", "other", time.Hour)
			if err != nil || !ok {
				return nil, fmt.Errorf("other: ok %v, %w", ok, err)
			}
			return append(got, other), nil
		})
		id, err := wf.Trigger(ctx, s, 3)
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, slowPoll)
		if err := s.Runs().Send(ctx, id, "jobs", "a"); err != nil {
			t.Fatal(err)
		}
		if err := s.Runs().Send(ctx, id, "other", "x"); err != nil {
			t.Fatal(err)
		}
		// The run receives "a", then waits for the next job; the later
		// ones arrive while it waits, or while it is being woken.
		awaitRecvWait(t, s, "inbox", id, "jobs")
		for _, v := range []string{"b", "c"} {
			if err := s.Runs().Send(ctx, id, "jobs", v); err != nil {
				t.Fatal(err)
			}
		}
		got, err := waitResult(t, s, wf, id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"a", "b", "c", "x"}, got); diff != "" {
			t.Errorf("received (-want +got):\n%s", diff)
		}
		want := []string{`jobs:"a"→jobs/0`, `other:"x"→other`, `jobs:"b"→jobs/1`, `jobs:"c"→jobs/2`}
		if diff := cmp.Diff(want, receipts(mailbox(t, s, id))); diff != "" {
			t.Errorf("signals (-want +got):\n%s", diff)
		}
	})
}

func TestSignalReceivedOnceAcrossWorkerRestart(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var blocks atomic.Int64
		blocked := make(chan struct{}, 1)
		wf := NewWorkflow("restarts", func(ctx context.Context, run *Run, _ struct{}) ([]string, error) {
			first, _, err := Recv[string](ctx, run, "first", "t", time.Hour)
			if err != nil {
				return nil, err
			}
			if _, err := Step(ctx, run, "block", func(ctx context.Context) (int, error) {
				if blocks.Add(1) == 1 {
					blocked <- struct{}{}
					<-ctx.Done() // the worker stops under it
					return 0, ctx.Err()
				}
				return 2, nil
			}); err != nil {
				return nil, err
			}
			second, _, err := Recv[string](ctx, run, "second", "t", time.Hour)
			if err != nil {
				return nil, err
			}
			return []string{first, second}, nil
		})
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range []string{"one", "two"} {
			if err := s.Runs().Send(ctx, id, "t", v); err != nil {
				t.Fatal(err)
			}
		}
		o := &RunOptions{Concurrency: 1, PollInterval: 50 * time.Millisecond, ShutdownTimeout: 50 * time.Millisecond,
			Logger: slog.New(slog.DiscardHandler)}
		stop := serveInBackground(t, s, wf, o)
		select {
		case <-blocked:
		case <-time.After(20 * time.Second):
			t.Fatal("the step after the first Recv never ran")
		}
		// Between the claim of "one" and the next step's record: stop.
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{`t:"one"→first`, `t:"two"→`}, receipts(mailbox(t, s, id))); diff != "" {
			t.Errorf("signals after the stop (-want +got):\n%s", diff)
		}
		serveInBackground(t, s, wf, o)
		got, err := waitResult(t, s, wf, id)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"one", "two"}, got); diff != "" {
			t.Errorf("result (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]string{`t:"one"→first`, `t:"two"→second`}, receipts(mailbox(t, s, id))); diff != "" {
			t.Errorf("signals (-want +got):\n%s", diff)
		}
		if n := blocks.Load(); n != 2 {
			t.Errorf("the cut-off step ran %d times, want 2", n)
		}
	})
}

func TestSignalRecvTimesOut(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		const timeout = 300 * time.Millisecond
		wf := NewWorkflow("patience", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			v, ok, err := Recv[string](ctx, run, "wait", "late", timeout)
			if err != nil {
				return "", err
			}
			// A replay after the sleep must agree, though a signal came.
			if err := Sleep(ctx, run, "nap", 300*time.Millisecond); err != nil {
				return "", err
			}
			return fmt.Sprintf("%q %v", v, ok), nil
		})
		start := time.Now()
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		await(t, 20*time.Second, "the run to time out and sleep", func() bool {
			return len(runStatus(t, s, id).Steps) == 2
		})
		if err := s.Runs().Send(ctx, id, "late", "too late"); err != nil {
			t.Fatal(err)
		}
		got, err := waitResult(t, s, wf, id)
		if err != nil || got != `"" false` {
			t.Fatalf("result %s, %v; want a timeout", got, err)
		}
		if d := time.Since(start); d < timeout {
			t.Errorf("timed out after %v, before %v", d, timeout)
		}
		steps := runStatus(t, s, id).Steps
		if len(steps) != 2 || string(steps[0].Output) != `{"timed_out": true}` && string(steps[0].Output) != `{"timed_out":true}` {
			t.Errorf("steps = %+v", summarize(steps))
		}
		if diff := cmp.Diff([]string{`late:"too late"→`}, receipts(mailbox(t, s, id))); diff != "" {
			t.Errorf("signals (-want +got):\n%s", diff)
		}
		wantErr(t, s.Runs().Send(ctx, id, "late", 1), ErrRunFinished)
	})
}

func TestSignalSendTx(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("txsignal", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			v, _, err := Recv[string](ctx, run, "wait", "t", time.Hour)
			return v, err
		})
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		awaitRecvWait(t, s, "txsignal", id, "t")
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Runs().SendTx(ctx, tx, id, "t", "rolled back"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		tx, err = s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Runs().SendTx(ctx, tx, id, "t", "committed"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		got, err := waitResult(t, s, wf, id)
		if err != nil || got != "committed" {
			t.Fatalf("result %q, %v", got, err)
		}
		wantErr(t, s.Runs().SendTx(ctx, nil, id, "t", 1), ErrInvalidArgument)
	})
}

func TestSignalBadInput(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("bad", func(ctx context.Context, run *Run, _ struct{}) (int, error) {
			if _, _, err := Recv[int](ctx, run, "neg", "t", -time.Second); !errors.Is(err, ErrInvalidArgument) {
				return 0, fmt.Errorf("negative timeout: %v", err)
			}
			if _, _, err := Recv[int](ctx, run, "empty", "", time.Second); !errors.Is(err, ErrInvalidArgument) {
				return 0, fmt.Errorf("empty topic: %v", err)
			}
			if err := SetEvent(ctx, run, "", 1); !errors.Is(err, ErrInvalidArgument) {
				return 0, fmt.Errorf("empty key: %v", err)
			}
			if err := SetEvent(ctx, run, "k", json.RawMessage(`{`)); !errors.Is(err, ErrInvalidPayload) {
				return 0, fmt.Errorf("bad event JSON: %v", err)
			}
			// A payload that does not decode into T.
			if _, _, err := Recv[int](ctx, run, "typed", "t", time.Hour); err == nil || !strings.Contains(err.Error(), "decode signal") {
				return 0, fmt.Errorf("a string into an int: %v", err)
			}
			return 1, nil
		})
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		r := s.Runs()
		wantErr(t, r.Send(ctx, id, "", 1), ErrInvalidArgument)
		wantErr(t, r.Send(ctx, id, strings.Repeat("x", 257), 1), ErrInvalidArgument)
		wantErr(t, r.Send(ctx, id, "t\x00", 1), ErrInvalidArgument)
		wantErr(t, r.Send(ctx, id, "t", json.RawMessage(`{"a":`)), ErrInvalidPayload)
		wantErr(t, r.Send(ctx, id, "t", json.RawMessage(`"\u0000"`)), ErrInvalidPayload)
		wantErr(t, r.Send(ctx, id, "t", func() {}), ErrInvalidPayload)
		wantErr(t, r.Send(ctx, id+1000, "t", 1), ErrRunNotFound)
		if err := r.Send(ctx, id, "t", "not an int"); err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		if got, err := waitResult(t, s, wf, id); err != nil || got != 1 {
			t.Fatalf("result %d, %v", got, err)
		}
		wantErr(t, r.Send(ctx, id, "t", 1), ErrRunFinished)
		_, err = r.GetEvent(ctx, id+1000, "k")
		wantErr(t, err, ErrRunNotFound)
		_, err = r.GetEvent(ctx, id, "")
		wantErr(t, err, ErrInvalidArgument)
		_, err = r.AwaitEvent(ctx, id, "k", -time.Second)
		wantErr(t, err, ErrInvalidArgument)
		_, err = r.Mailbox(ctx, id+1000)
		wantErr(t, err, ErrRunNotFound)
	})
}

func TestEvents(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("progress", func(ctx context.Context, run *Run, _ struct{}) (int, error) {
			if err := SetEvent(ctx, run, "progress", 10); err != nil {
				return 0, err
			}
			// Go on when told: the test reads the event meanwhile, and the
			// replay after the wait must not set 10 again.
			if _, _, err := Recv[struct{}](ctx, run, "go", "go", time.Hour); err != nil {
				return 0, err
			}
			if err := SetEvent(ctx, run, "progress", 50); err != nil {
				return 0, err
			}
			if err := SetEvent(ctx, run, "progress", map[string]int{"done": 100}); err != nil {
				return 0, err
			}
			if err := SetEvent(ctx, run, "result", nil); err != nil {
				return 0, err
			}
			return 1, nil
		})
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		r := s.Runs()
		if _, err := r.GetEvent(ctx, id, "progress"); !errors.Is(err, ErrEventNotFound) {
			t.Fatalf("before the run: %v, want ErrEventNotFound", err)
		}
		awaited := make(chan string, 1)
		go func() {
			v, err := r.AwaitEvent(ctx, id, "progress", time.Minute)
			awaited <- fmt.Sprintf("%s %v", v, err)
		}()
		serveInBackground(t, s, wf, slowPoll)
		select {
		case got := <-awaited:
			if got != "10 <nil>" {
				t.Errorf("AwaitEvent = %s, want 10", got)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("AwaitEvent did not return after the event was set")
		}
		awaitRecvWait(t, s, "progress", id, "go")
		start := time.Now()
		_, err = r.AwaitEvent(ctx, id, "result", 200*time.Millisecond)
		if !errors.Is(err, ErrEventNotFound) || time.Since(start) < 200*time.Millisecond {
			t.Errorf("AwaitEvent of an unset event after %v: %v, want ErrEventNotFound after the timeout", time.Since(start), err)
		}
		if err := r.Send(ctx, id, "go", nil); err != nil {
			t.Fatal(err)
		}
		if got, err := waitResult(t, s, wf, id); err != nil || got != 1 {
			t.Fatalf("result %d, %v", got, err)
		}
		v, err := r.GetEvent(ctx, id, "progress")
		if err != nil || string(v) != `{"done":100}` && string(v) != `{"done": 100}` {
			t.Errorf("last progress = %s, %v", v, err)
		}
		if v, err := r.AwaitEvent(ctx, id, "result", time.Minute); err != nil || string(v) != "null" {
			t.Errorf("result event = %s, %v", v, err)
		}
		start = time.Now()
		if _, err := r.AwaitEvent(ctx, id, "never", time.Minute); !errors.Is(err, ErrEventNotFound) || time.Since(start) > 10*time.Second {
			t.Errorf("AwaitEvent on a finished run: %v after %v", err, time.Since(start))
		}
		var names []string
		for _, st := range runStatus(t, s, id).Steps {
			names = append(names, st.Name)
		}
		if diff := cmp.Diff([]string{"event:progress", "go", "event:progress#2", "event:progress#3", "event:result"}, names); diff != "" {
			t.Errorf("steps (-want +got):\n%s", diff)
		}
		events := mailbox(t, s, id).Events
		if len(events) != 2 || events[0].Key != "progress" || events[1].Key != "result" || events[0].UpdatedAt.IsZero() {
			t.Errorf("events = %+v", events)
		}
	})
}

// TestSignalsWakeAcrossProcesses: on Postgres a Send through one Store
// wakes a worker of another (NOTIFY), and a SetEvent in the worker wakes
// an AwaitEvent in the other; both poll hourly here.
func TestSignalsWakeAcrossProcesses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn, opts := backendDSN(t, "postgres")
	open := func() *Store {
		s, err := Open(ctx, dsn, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		if err := s.Admin().Install(ctx); err != nil {
			t.Fatal(err)
		}
		return s
	}
	worker, other := open(), open()
	other.waitPoll = time.Hour
	wf := NewWorkflow("remote", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
		v, _, err := Recv[string](ctx, run, "wait", "t", time.Hour)
		if err != nil {
			return "", err
		}
		return v, SetEvent(ctx, run, "got", v)
	})
	id, err := wf.Trigger(ctx, worker, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	serveInBackground(t, worker, wf, &RunOptions{PollInterval: time.Hour})
	awaitRecvWait(t, worker, "remote", id, "t")
	// The other Store listens once it awaits something.
	awaited := make(chan string, 1)
	go func() {
		v, err := other.Runs().AwaitEvent(ctx, id, "got", time.Minute)
		awaited <- fmt.Sprintf("%s %v", v, err)
	}()
	await(t, 10*time.Second, "the other Store to listen", other.listening.Load)
	if err := other.Runs().Send(ctx, id, "t", "hello"); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-awaited:
		if got != `"hello" <nil>` {
			t.Errorf("AwaitEvent = %s", got)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the send did not wake the worker, or the event did not wake the awaiting Store")
	}
}

// crashRecvFlow receives two signals with a step between them; the child
// process of TestSignalCrashRecovery hangs in that step (hang), once the
// runs in waiters all wait in their first Recv.
func crashRecvFlow(s *Store, hang bool, waiters []int64) *Workflow[struct{}, []string] {
	return NewWorkflow("sigcrash", func(ctx context.Context, run *Run, _ struct{}) ([]string, error) {
		first, _, err := Recv[string](ctx, run, "first", "t", time.Hour)
		if err != nil {
			return nil, err
		}
		if _, err := Step(ctx, run, "between", func(ctx context.Context) (bool, error) {
			if !hang {
				return true, nil
			}
			for _, id := range waiters {
				for {
					m, err := s.Runs().Mailbox(ctx, id)
					if err == nil && len(m.Waiting) == 1 {
						break
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
			fmt.Printf("STARTED %d\n", run.ID())
			select {} // hang until killed
		}); err != nil {
			return nil, err
		}
		second, _, err := Recv[string](ctx, run, "second", "t", time.Hour)
		if err != nil {
			return nil, err
		}
		return []string{first, second}, nil
	})
}

// TestSignalCrashChild is the process TestSignalCrashRecovery kills.
func TestSignalCrashChild(t *testing.T) {
	s := childStore(t, "PGQRS_SIGCRASH_DSN", "TestSignalCrashRecovery")
	var waiters []int64
	for _, f := range strings.Fields(os.Getenv("PGQRS_SIGCRASH_WAITERS")) {
		id, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		waiters = append(waiters, id)
	}
	err := crashRecvFlow(s, true, waiters).Serve(context.Background(), s,
		&RunOptions{Concurrency: 5, VisibilityTimeout: time.Second, HeartbeatInterval: 100 * time.Millisecond})
	t.Fatalf("Serve returned %v; it should have been killed", err)
}

// TestSignalCrashRecovery kills a workflow worker process while some runs
// have received their first signal (and hang in the next step) and others
// wait in Recv for theirs: afterwards a new worker finishes every run,
// each signal was received exactly once, by the right step, in order.
func TestSignalCrashRecovery(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dsn, s := crashStore(t, b)
			wf := crashRecvFlow(s, false, nil)
			if err := wf.Register(ctx, s); err != nil {
				t.Fatal(err)
			}
			trigger := func(n int) []int64 {
				var ids []int64
				for range n {
					id, err := wf.Trigger(ctx, s, struct{}{})
					if err != nil {
						t.Fatal(err)
					}
					ids = append(ids, id)
				}
				return ids
			}
			waiters, receivers := trigger(2), trigger(3)
			send := func(id int64, v string) {
				t.Helper()
				if err := s.Runs().Send(ctx, id, "t", v); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range receivers {
				send(id, fmt.Sprintf("%d/1", id))
			}
			var list []string
			for _, id := range waiters {
				list = append(list, strconv.FormatInt(id, 10))
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestSignalCrashChild$", "-test.count=1", "-test.timeout=5m")
			cmd.Env = append(os.Environ(), "PGQRS_SIGCRASH_DSN="+dsn, "PGQRS_CRASH_SCHEMA="+s.d.schema,
				"PGQRS_SIGCRASH_WAITERS="+strings.Join(list, " "))
			if got := startChild(t, cmd, len(receivers)); !cmp.Equal(got, receivers) {
				t.Fatalf("child hung after the first Recv of %v, want %v", got, receivers)
			}
			for _, id := range receivers {
				want := []string{fmt.Sprintf(`t:"%d/1"→first`, id)}
				if diff := cmp.Diff(want, receipts(mailbox(t, s, id))); diff != "" {
					t.Errorf("run %d after the kill (-want +got):\n%s", id, diff)
				}
			}
			for _, id := range waiters {
				if m := mailbox(t, s, id); len(m.Waiting) != 1 || len(m.Signals) != 0 {
					t.Errorf("waiting run %d after the kill: %+v", id, m)
				}
			}
			for _, id := range waiters {
				send(id, fmt.Sprintf("%d/1", id))
			}
			all := append(slices.Clone(waiters), receivers...)
			for _, id := range all {
				send(id, fmt.Sprintf("%d/2", id))
			}
			serveInBackground(t, s, wf, fastPoll)
			for _, id := range all {
				got, err := waitResult(t, s, wf, id)
				if want := []string{fmt.Sprintf("%d/1", id), fmt.Sprintf("%d/2", id)}; err != nil || !cmp.Equal(got, want) {
					t.Errorf("run %d = %q, %v; want %q", id, got, err, want)
				}
				want := []string{fmt.Sprintf(`t:"%d/1"→first`, id), fmt.Sprintf(`t:"%d/2"→second`, id)}
				if diff := cmp.Diff(want, receipts(mailbox(t, s, id))); diff != "" {
					t.Errorf("run %d signals (-want +got):\n%s", id, diff)
				}
			}
		})
	}
}

// TestSignalWaitEndsAtTheRunDeadline: a run waiting in Recv past its
// Timeout ends CANCELLED by its deadline, as a sleeping one does.
func TestSignalWaitEndsAtTheRunDeadline(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("deadline", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			v, _, err := Recv[string](ctx, run, "wait", "never", time.Hour)
			return v, err
		})
		id, err := wf.Trigger(ctx, s, struct{}{}, Timeout(500*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		_, err = waitResult(t, s, wf, id)
		wantErr(t, err, ErrRunCancelled)
		if info := runStatus(t, s, id); info.Status != RunCancelled || !strings.Contains(info.Error, "deadline exceeded") {
			t.Errorf("run = %s %q, want CANCELLED by its deadline", info.Status, info.Error)
		}
		wantErr(t, s.Runs().Send(ctx, id, "never", 1), ErrRunFinished)
	})
}
