package pgqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// serveInBackground starts wf.Serve and returns a function that cancels it
// and returns Serve's error.
func serveInBackground[In, Out any](t *testing.T, s *Store, wf *Workflow[In, Out], o *RunOptions) (stop func() error) {
	t.Helper()
	return inBackground(t, func(ctx context.Context) error { return wf.Serve(ctx, s, o) })
}

// fastPoll keeps workflow tests quick: runs that wait for a timer come back
// within a poll interval of it.
var fastPoll = &RunOptions{Concurrency: 4, PollInterval: 50 * time.Millisecond}

// waitResult waits for a run's result with a deadline.
func waitResult[In, Out any](t *testing.T, s *Store, wf *Workflow[In, Out], id int64) (Out, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	return wf.Result(ctx, s, id)
}

func runStatus(t *testing.T, s *Store, id int64) *RunInfo {
	t.Helper()
	info, err := s.Runs().Get(t.Context(), id)
	if err != nil {
		t.Fatalf("run status: %v", err)
	}
	return info
}

type stepSummary struct {
	Name     string
	Status   StepStatus
	Output   string
	Attempts int
}

func summarize(steps []StepInfo) []stepSummary {
	out := make([]stepSummary, len(steps))
	for i, st := range steps {
		out[i] = stepSummary{st.Name, st.Status, string(st.Output), st.Attempts}
	}
	return out
}

type order struct {
	Item string `json:"item"`
	Qty  int    `json:"qty"`
}

type receipt struct {
	Total int    `json:"total"`
	Note  string `json:"note"`
}

func TestWorkflowRunsStepsAndRecordsThem(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var calls atomic.Int64
		wf := NewWorkflow("checkout", func(ctx context.Context, run *Run, in order) (receipt, error) {
			price, err := Step(ctx, run, "price", func(context.Context) (int, error) {
				calls.Add(1)
				return 7, nil
			})
			if err != nil {
				return receipt{}, err
			}
			total, err := Step(ctx, run, "total", func(context.Context) (int, error) {
				calls.Add(1)
				return price * in.Qty, nil
			})
			if err != nil {
				return receipt{}, err
			}
			note, err := Step(ctx, run, "note", func(context.Context) (string, error) {
				calls.Add(1)
				return fmt.Sprintf("%d × %s", in.Qty, in.Item), nil
			})
			return receipt{Total: total, Note: note}, err
		})
		for range 2 { // registration is idempotent
			if err := wf.Register(ctx, s); err != nil {
				t.Fatalf("register: %v", err)
			}
		}
		id, err := wf.Trigger(ctx, s, order{Item: "pear", Qty: 3})
		if err != nil {
			t.Fatal(err)
		}
		if st := runStatus(t, s, id); st.Status != RunQueued || st.Workflow != "checkout" || string(st.Input) == "" {
			t.Fatalf("before any worker: %+v", st)
		}
		serveInBackground(t, s, wf, fastPoll)
		got, err := waitResult(t, s, wf, id)
		if err != nil {
			t.Fatalf("result: %v", err)
		}
		if diff := cmp.Diff(receipt{Total: 21, Note: "3 × pear"}, got); diff != "" {
			t.Errorf("result (-want +got):\n%s", diff)
		}
		info := runStatus(t, s, id)
		if info.Status != RunSucceeded || info.StartedAt.IsZero() || info.FinishedAt.Before(info.StartedAt) || info.Error != "" {
			t.Errorf("finished run = %+v", info)
		}
		want := []stepSummary{
			{"price", StepSucceeded, "7", 1},
			{"total", StepSucceeded, "21", 1},
			{"note", StepSucceeded, `"3 × pear"`, 1},
		}
		if diff := cmp.Diff(want, summarize(info.Steps)); diff != "" {
			t.Errorf("steps (-want +got):\n%s", diff)
		}
		if calls.Load() != 3 {
			t.Errorf("step bodies ran %d times, want 3", calls.Load())
		}
		// The run's message is archived once the run has ended.
		await(t, 10*time.Second, "the run's message to be archived", func() bool {
			m := metrics(t, s, "checkout")
			return m.Archived == 1 && m.Pending == 0 && m.Leased == 0
		})
	})
}

// fastRetry retries quickly so tests need not wait for the default backoff.
func fastRetry(n int, d time.Duration) RetryPolicy {
	return RetryPolicy{MaxRetries: n, Backoff: func(int) time.Duration { return d }}
}

func TestWorkflowRetriesTransientFailures(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var attempts atomic.Int64
		var firstFailed = make(chan struct{})
		var once sync.Once
		wf := NewWorkflow("flaky", func(ctx context.Context, run *Run, in int) (int, error) {
			return Step(ctx, run, "call", func(context.Context) (int, error) {
				if n := attempts.Add(1); n <= 2 {
					once.Do(func() { close(firstFailed) })
					return 0, Transient(fmt.Errorf("attempt %d: service unavailable", n))
				}
				return in * 2, nil
			})
		}).WithRetry(fastRetry(3, 300*time.Millisecond))
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		id, err := wf.Trigger(ctx, s, 21)
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		<-firstFailed
		// The retry is scheduled in the store: the run's message is not
		// visible, nor held by a worker, until the retry time.
		await(t, 5*time.Second, "the failed attempt to be recorded", func() bool {
			st := runStatus(t, s, id)
			return len(st.Steps) == 1 && st.Steps[0].Status == StepFailed
		})
		got, err := waitResult(t, s, wf, id)
		if err != nil || got != 42 {
			t.Fatalf("result = %d, %v; want 42", got, err)
		}
		info := runStatus(t, s, id)
		want := []stepSummary{{"call", StepSucceeded, "42", 3}}
		if diff := cmp.Diff(want, summarize(info.Steps)); diff != "" {
			t.Errorf("steps (-want +got):\n%s", diff)
		}
		// Waiting for a retry used no delivery attempts.
		await(t, 10*time.Second, "archive", func() bool { return metrics(t, s, "flaky").Archived == 1 })
		archived, err := s.Admin().ListArchived(ctx, "flaky", ArchivePage{})
		if err != nil {
			t.Fatal(err)
		}
		if len(archived) != 1 || archived[0].ReadCount != 1 {
			t.Errorf("archived trigger = %+v, want read count 1", archived)
		}
	})
}

func TestWorkflowRetryIsScheduledNotHot(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var attempts atomic.Int64
		wf := NewWorkflow("later", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			return Step(ctx, run, "call", func(context.Context) (string, error) {
				attempts.Add(1)
				return "", Transient(errors.New("try again in an hour"))
			})
		}).WithRetry(fastRetry(3, time.Hour))
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		stop := serveInBackground(t, s, wf, fastPoll)
		await(t, 10*time.Second, "the first attempt to fail", func() bool {
			st := runStatus(t, s, id)
			return len(st.Steps) == 1 && st.Steps[0].Status == StepFailed
		})
		await(t, 10*time.Second, "the message to be given back", func() bool {
			m := metrics(t, s, "later")
			return m.Delayed == 1 && m.Leased == 0 && m.Visible == 0
		})
		st := runStatus(t, s, id)
		if st.Status != RunRunning {
			t.Errorf("status while waiting = %s, want RUNNING", st.Status)
		}
		if wait := time.Until(st.Steps[0].RetryAt); wait < 50*time.Minute || wait > 61*time.Minute {
			t.Errorf("retry at %v, %v from now; want about an hour", st.Steps[0].RetryAt, wait)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		// Nobody can claim it before the retry time.
		c, err := s.Consumer(ctx, "later")
		if err != nil {
			t.Fatal(err)
		}
		if got := mustDequeue(t, c, 10); len(got) != 0 {
			t.Errorf("claimed %d messages of a run waiting for its retry", len(got))
		}
		if attempts.Load() != 1 {
			t.Errorf("attempts = %d, want 1", attempts.Load())
		}
	})
}

func TestWorkflowFailures(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var calls sync.Map // step name → *atomic.Int64
		count := func(name string) int64 {
			v, _ := calls.LoadOrStore(name, new(atomic.Int64))
			return v.(*atomic.Int64).Add(1)
		}
		wf := NewWorkflow("failing", func(ctx context.Context, run *Run, mode string) (string, error) {
			return Step(ctx, run, mode, func(context.Context) (string, error) {
				count(mode)
				switch mode {
				case "exhausted":
					return "", Transient(errors.New("still down"))
				case "permanent":
					return "", errors.New("bad request")
				case "permanent-marked":
					return "", Permanent(errors.New("bad request"))
				case "permanent-over-transient":
					return "", Permanent(Transient(errors.New("gone for good")))
				case "panic":
					panic("step exploded")
				}
				return "", fmt.Errorf("unknown mode %q", mode)
			}, StepRetry(RetryPolicy{MaxRetries: 2, Backoff: func(int) time.Duration { return 10 * time.Millisecond },
				RetryAllErrors: mode == "permanent-marked"}))
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		cases := []struct {
			mode     string
			attempts int
			text     string
		}{
			{"exhausted", 3, "still down"},
			{"permanent", 1, "bad request"},
			{"permanent-marked", 1, "bad request"},
			{"permanent-over-transient", 1, "gone for good"},
			{"panic", 1, "step exploded"},
		}
		for _, tc := range cases {
			id, err := wf.Trigger(ctx, s, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			_, err = waitResult(t, s, wf, id)
			var re *RunError
			if !errors.As(err, &re) || !errors.Is(err, ErrRunFailed) || !strings.Contains(re.Message, tc.text) {
				t.Errorf("%s: result error = %v, want a *RunError mentioning %q", tc.mode, err, tc.text)
			}
			info := runStatus(t, s, id)
			if info.Status != RunFailed || len(info.Steps) != 1 || info.Steps[0].Attempts != tc.attempts ||
				info.Steps[0].Status != StepFailed || !info.Steps[0].RetryAt.IsZero() {
				t.Errorf("%s: run = %+v, steps %+v; want ERROR after %d attempts", tc.mode, info, info.Steps, tc.attempts)
			}
			v, _ := calls.Load(tc.mode)
			if got := v.(*atomic.Int64).Load(); got != int64(tc.attempts) {
				t.Errorf("%s: step ran %d times, want %d", tc.mode, got, tc.attempts)
			}
		}
	})
}

func TestWorkflowSleepSurvivesWorkerRestart(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		const nap = 1500 * time.Millisecond
		var before, after atomic.Int64
		wf := NewWorkflow("napper", func(ctx context.Context, run *Run, _ struct{}) (time.Time, error) {
			if _, err := Step(ctx, run, "before", func(context.Context) (bool, error) { before.Add(1); return true, nil }); err != nil {
				return time.Time{}, err
			}
			if err := Sleep(ctx, run, "nap", nap); err != nil {
				return time.Time{}, err
			}
			return Step(ctx, run, "after", func(context.Context) (time.Time, error) { after.Add(1); return time.Now(), nil })
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		stop := serveInBackground(t, s, wf, fastPoll)
		await(t, 10*time.Second, "the run to go to sleep", func() bool {
			m := metrics(t, s, "napper")
			return len(runStatus(t, s, id).Steps) == 2 && m.Delayed == 1 && m.Leased == 0
		})
		// A sleeping run holds no worker: the worker stops at once.
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if after.Load() != 0 {
			t.Fatal("the step after the sleep ran before the sleep ended")
		}
		serveInBackground(t, s, wf, fastPoll)
		woke, err := waitResult(t, s, wf, id)
		if err != nil {
			t.Fatal(err)
		}
		if woke.Sub(start) < nap {
			t.Errorf("the run continued %v after it started, before its %v sleep ended", woke.Sub(start), nap)
		}
		if before.Load() != 1 || after.Load() != 1 {
			t.Errorf("steps ran before=%d after=%d times, want 1 each", before.Load(), after.Load())
		}
		steps := runStatus(t, s, id).Steps
		if len(steps) != 3 || steps[1].Name != "nap" || steps[1].Status != StepSucceeded {
			t.Errorf("steps = %+v", steps)
		}
	})
}

func TestWorkflowPauseAndResume(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var approvals atomic.Int64
		wf := NewWorkflow("approval", func(ctx context.Context, run *Run, until time.Time) (string, error) {
			return Step(ctx, run, "approve", func(context.Context) (string, error) {
				if approvals.Add(1) == 1 {
					return "", Pause(until) // wait for a human, or for a time
				}
				return "approved", nil
			})
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)

		// Paused until resumed.
		id, err := wf.Trigger(ctx, s, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "the run to pause", func() bool { return runStatus(t, s, id).Status == RunPaused })
		await(t, 10*time.Second, "the message to be given back", func() bool {
			m := metrics(t, s, "approval")
			return m.Delayed == 1 && m.Leased == 0
		})
		if info := runStatus(t, s, id); !info.ResumeAt.IsZero() || len(info.Steps) != 0 {
			t.Errorf("paused run = %+v, want no resume time and no recorded step", info)
		}
		wantErr(t, s.Runs().Resume(ctx, 999999), ErrRunNotFound)
		if err := s.Runs().Resume(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got, err := waitResult(t, s, wf, id); err != nil || got != "approved" {
			t.Fatalf("result = %q, %v", got, err)
		}
		wantErr(t, s.Runs().Resume(ctx, id), ErrRunFinished)

		// Paused until a time: it continues by itself.
		approvals.Store(0)
		id, err = wf.Trigger(ctx, s, time.Now().Add(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "the run to pause", func() bool { return runStatus(t, s, id).Status == RunPaused })
		if info := runStatus(t, s, id); info.ResumeAt.IsZero() {
			t.Errorf("paused run has no resume time: %+v", info)
		}
		if got, err := waitResult(t, s, wf, id); err != nil || got != "approved" {
			t.Fatalf("result = %q, %v", got, err)
		}
		if approvals.Load() != 2 {
			t.Errorf("the paused step ran %d times, want 2", approvals.Load())
		}
	})
}

func TestWorkflowCancellation(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var first, second atomic.Int64
		inFirst := make(chan int64, 10)
		release := make(chan struct{})
		wf := NewWorkflow("cancellable", func(ctx context.Context, run *Run, mode string) (string, error) {
			if _, err := Step(ctx, run, "first", func(context.Context) (int, error) {
				first.Add(1)
				if mode == "block" {
					inFirst <- run.ID()
					<-release
				}
				return 1, nil
			}); err != nil {
				return "", err
			}
			if mode == "sleep" {
				if err := Sleep(ctx, run, "wait", time.Hour); err != nil {
					return "", err
				}
			}
			return Step(ctx, run, "second", func(context.Context) (string, error) {
				second.Add(1)
				return "done", nil
			})
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}

		// Before it starts: cancelled at once, and no step ever runs.
		queued, err := wf.Trigger(ctx, s, "plain")
		if err != nil {
			t.Fatal(err)
		}
		if st, err := s.Runs().Cancel(ctx, queued); err != nil || st != RunCancelled {
			t.Fatalf("cancel a queued run = %s, %v; want CANCELLED", st, err)
		}
		if st, err := s.Runs().Cancel(ctx, queued); err == nil {
			t.Errorf("second cancel = %s, want an error", st)
		} else {
			wantErr(t, err, ErrRunFinished)
		}
		serveInBackground(t, s, wf, fastPoll)
		_, err = waitResult(t, s, wf, queued)
		wantErr(t, err, ErrRunCancelled)
		await(t, 10*time.Second, "the cancelled run's message to be archived", func() bool {
			return metrics(t, s, "cancellable").Archived == 1
		})
		if first.Load() != 0 {
			t.Errorf("a run cancelled before it started ran a step")
		}

		// Between steps (asleep, no worker): cancelled at once.
		sleeping, err := wf.Trigger(ctx, s, "sleep")
		if err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "the run to sleep", func() bool {
			m := metrics(t, s, "cancellable")
			return len(runStatus(t, s, sleeping).Steps) == 2 && m.Delayed == 1 && m.Leased == 0
		})
		if st, err := s.Runs().Cancel(ctx, sleeping); err != nil || st != RunCancelled {
			t.Fatalf("cancel a sleeping run = %s, %v; want CANCELLED", st, err)
		}
		_, err = waitResult(t, s, wf, sleeping)
		wantErr(t, err, ErrRunCancelled)
		await(t, 10*time.Second, "the sleeping run's message to be archived", func() bool {
			return metrics(t, s, "cancellable").Archived == 2
		})

		// During a step: the step finishes, the next one never starts.
		running, err := wf.Trigger(ctx, s, "block")
		if err != nil {
			t.Fatal(err)
		}
		<-inFirst
		if st, err := s.Runs().Cancel(ctx, running); err != nil || st != RunCancelling {
			t.Fatalf("cancel a running run = %s, %v; want CANCELLING", st, err)
		}
		if st := runStatus(t, s, running).Status; st != RunCancelling {
			t.Errorf("status = %s, want CANCELLING", st)
		}
		close(release)
		_, err = waitResult(t, s, wf, running)
		wantErr(t, err, ErrRunCancelled)
		info := runStatus(t, s, running)
		if len(info.Steps) != 1 || info.Steps[0].Name != "first" || info.Steps[0].Status != StepSucceeded {
			t.Errorf("steps of the run cancelled during its first step = %+v", info.Steps)
		}
		if second.Load() != 0 {
			t.Errorf("a step started after the run was cancelled")
		}
		if first.Load() != 2 {
			t.Errorf("first step ran %d times, want 2 (sleep and block runs)", first.Load())
		}
		_, err = s.Runs().Cancel(ctx, 987654)
		wantErr(t, err, ErrRunNotFound)
	})
}

func TestWorkflowRejectsDuplicateStepNames(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("dupes", func(ctx context.Context, run *Run, _ struct{}) (int, error) {
			if _, err := Step(ctx, run, "same", func(context.Context) (int, error) { return 1, nil }); err != nil {
				return 0, err
			}
			return Step(ctx, run, "same", func(context.Context) (int, error) { return 2, nil })
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		_, err = waitResult(t, s, wf, id)
		var re *RunError
		if !errors.As(err, &re) || !strings.Contains(re.Message, "duplicate step name") {
			t.Errorf("result = %v, want a failure naming the duplicate step", err)
		}
	})
}

// TestWorkflowDetectsNondeterministicReplay changes a workflow's first step
// while its run sleeps: the next execution reaches another step where the
// run recorded "charge", and the run must fail naming both steps, even
// though the function swallows the error and returns a result, and no step
// after the divergence may run.
func TestWorkflowDetectsNondeterministicReplay(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var changed atomic.Bool
		var afterRan atomic.Int64
		var seen atomic.Value
		wf := NewWorkflow("drifter", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			first := "charge"
			if changed.Load() {
				first = "refund"
			}
			if _, err := Step(ctx, run, first, func(context.Context) (bool, error) { return true, nil }); err != nil {
				seen.Store(err)
				return "swallowed", nil // a careless function; the run must fail anyway
			}
			// The deploy below must land while the run sleeps: the first
			// server is stopped within this nap of the run starting it (at
			// 300 ms, a loaded CI machine let the old code finish the run).
			if err := Sleep(ctx, run, "nap", 3*time.Second); err != nil {
				return "", err
			}
			return Step(ctx, run, "ship", func(context.Context) (string, error) { afterRan.Add(1); return "shipped", nil })
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		stop := serveInBackground(t, s, wf, fastPoll)
		await(t, 10*time.Second, "the run to sleep", func() bool { return len(runStatus(t, s, id).Steps) == 2 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		changed.Store(true) // a deploy while the run sleeps
		serveInBackground(t, s, wf, fastPoll)
		_, err = waitResult(t, s, wf, id)
		var re *RunError
		if !errors.As(err, &re) || !strings.Contains(re.Message, `"refund"`) || !strings.Contains(re.Message, `"charge"`) {
			t.Errorf("result = %v, want a failure naming the recorded and the reached step", err)
		}
		var ne *NondeterminismError
		if err, _ := seen.Load().(error); !errors.As(err, &ne) || !errors.Is(err, ErrNondeterministic) ||
			ne.Position != 0 || ne.Recorded != "charge" || ne.Reached != "refund" {
			t.Errorf("Step returned %v, want a *NondeterminismError at position 0", err)
		}
		if afterRan.Load() != 0 {
			t.Error("a step after the divergence ran")
		}
		if st := runStatus(t, s, id); st.Status != RunFailed || len(st.Steps) != 2 {
			t.Errorf("run = %s with %d steps, want ERROR with the 2 recorded", st.Status, len(st.Steps))
		}
	})
}

// TestWorkflowTimeout gives runs a deadline at trigger time: a run sleeping
// past it, one whose step is still running at it and one paused until
// resumed all end CANCELLED at the deadline with an error saying so, and no
// step after the deadline runs; a run that finishes in time succeeds.
func TestWorkflowTimeout(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var after atomic.Int64
		var stepCtxErr atomic.Value
		wf := NewWorkflow("deadline", func(ctx context.Context, run *Run, mode string) (string, error) {
			switch mode {
			case "sleep":
				if err := Sleep(ctx, run, "long", time.Hour); err != nil {
					return "", err
				}
			case "block":
				if _, err := Step(ctx, run, "block", func(ctx context.Context) (bool, error) {
					<-ctx.Done()
					stepCtxErr.Store(ctx.Err())
					return false, ctx.Err()
				}); err != nil {
					return "", err
				}
			case "pause":
				if _, err := Step(ctx, run, "pause", func(context.Context) (bool, error) { return false, Pause(time.Time{}) }); err != nil {
					return "", err
				}
			}
			return Step(ctx, run, "after", func(context.Context) (string, error) { after.Add(1); return "done", nil })
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		const timeout = 700 * time.Millisecond
		ids := map[string]int64{}
		start := time.Now()
		for _, mode := range []string{"sleep", "block", "pause"} {
			d := timeout
			if mode == "block" {
				// Long enough for a loaded machine to start the step before the
				// deadline: the point is the step's context ending at it.
				d = 3 * time.Second
			}
			id, err := wf.Trigger(ctx, s, mode, Timeout(d))
			if err != nil {
				t.Fatal(err)
			}
			ids[mode] = id
		}
		quick, err := wf.Trigger(ctx, s, "quick", Timeout(time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		for mode, id := range ids {
			_, err := waitResult(t, s, wf, id)
			if !errors.Is(err, ErrRunCancelled) || !strings.Contains(err.Error(), "deadline exceeded") {
				t.Errorf("%s: result = %v, want ErrRunCancelled saying the deadline passed", mode, err)
			}
			info := runStatus(t, s, id)
			if info.Status != RunCancelled || !strings.Contains(info.Error, "deadline exceeded") || info.Deadline.IsZero() {
				t.Errorf("%s: run = %s %q (deadline %v), want CANCELLED by its deadline", mode, info.Status, info.Error, info.Deadline)
			}
			if info.FinishedAt.Before(info.Deadline.Add(-50 * time.Millisecond)) {
				t.Errorf("%s: ended at %v, before its deadline %v", mode, info.FinishedAt, info.Deadline)
			}
		}
		if elapsed := time.Since(start); elapsed < timeout {
			t.Errorf("runs ended %v after their trigger, before the %v timeout", elapsed, timeout)
		}
		if err, _ := stepCtxErr.Load().(error); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the blocked step's context ended with %v, want the deadline", err)
		}
		if got, err := waitResult(t, s, wf, quick); err != nil || got != "done" {
			t.Errorf("a run that finishes in time = %q, %v", got, err)
		}
		if after.Load() != 1 {
			t.Errorf("the step after the deadline ran %d times, want once (the quick run only)", after.Load())
		}
		for _, o := range []EnqueueOption{Timeout(0), Timeout(-time.Second)} {
			if _, err := wf.Trigger(ctx, s, "quick", o); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("trigger with a non-positive timeout = %v, want ErrInvalidArgument", err)
			}
		}
		if _, err := s.Admin().CreateQueue(ctx, "plain"); err != nil {
			t.Fatal(err)
		}
		p, err := s.Producer(ctx, "plain")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Enqueue(ctx, 1, Timeout(time.Second)); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("enqueue with Timeout = %v, want ErrInvalidArgument", err)
		}
	})
}

// TestWorkflowPatched deploys a patch while a run sleeps past the patched
// point: that run keeps its recorded old path (replayed, not executed
// again), a run triggered after the deploy takes the new path and keeps it
// on replay, and neither is reported nondeterministic.
func TestWorkflowPatched(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var deployed atomic.Bool
		var oldCharges, newCharges atomic.Int64
		wf := NewWorkflow("patched", func(ctx context.Context, run *Run, in int) (string, error) {
			if _, err := Step(ctx, run, "reserve", func(context.Context) (int, error) { return in, nil }); err != nil {
				return "", err
			}
			path := "old"
			newPath := false
			if deployed.Load() {
				var err error
				if newPath, err = Patched(ctx, run, "charge-v2"); err != nil {
					return "", err
				}
			}
			if newPath {
				path = "new"
				if _, err := Step(ctx, run, "charge-v2", func(context.Context) (bool, error) { newCharges.Add(1); return true, nil }); err != nil {
					return "", err
				}
			} else if _, err := Step(ctx, run, "charge", func(context.Context) (bool, error) { oldCharges.Add(1); return true, nil }); err != nil {
				return "", err
			}
			if err := Sleep(ctx, run, "settle", 400*time.Millisecond); err != nil {
				return "", err
			}
			return path, nil
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		before, err := wf.Trigger(ctx, s, 1)
		if err != nil {
			t.Fatal(err)
		}
		stop := serveInBackground(t, s, wf, fastPoll)
		await(t, 10*time.Second, "the first run to sleep", func() bool { return len(runStatus(t, s, before).Steps) == 3 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		deployed.Store(true)
		after, err := wf.Trigger(ctx, s, 2)
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		if got, err := waitResult(t, s, wf, before); err != nil || got != "old" {
			t.Errorf("the run started before the deploy = %q, %v, want the old path", got, err)
		}
		if got, err := waitResult(t, s, wf, after); err != nil || got != "new" {
			t.Errorf("the run started after the deploy = %q, %v, want the new path", got, err)
		}
		if oldCharges.Load() != 1 || newCharges.Load() != 1 {
			t.Errorf("charges: old %d, new %d; want one each", oldCharges.Load(), newCharges.Load())
		}
		var names []string
		for _, st := range runStatus(t, s, after).Steps {
			names = append(names, st.Name)
		}
		if want := []string{"reserve", "pgqrs.patch/charge-v2", "charge-v2", "settle"}; !slices.Equal(names, want) {
			t.Errorf("steps of the patched run = %v, want %v", names, want)
		}
		if _, err := Patched(ctx, nil, "x"); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("Patched(nil run) = %v", err)
		}
	})
}

// TestWorkflowChildren fans out to child runs and in again: the parent
// records each child once however often it replays, waits for them holding
// no worker, is woken by the last child's end (long before its bounded
// wait), sees a failed child as a *ChildError, and cancelling a parent
// cancels its children.
func TestWorkflowChildren(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		square := NewWorkflow("square", func(ctx context.Context, run *Run, n int) (int, error) {
			return Step(ctx, run, "mul", func(context.Context) (int, error) {
				if n == 13 {
					return 0, Permanent(errors.New("unlucky"))
				}
				return n * n, nil
			})
		})
		idle := NewWorkflow("never-served", func(ctx context.Context, run *Run, n int) (int, error) { return n, nil })
		var executions atomic.Int64
		fanout := NewWorkflow("fanout", func(ctx context.Context, run *Run, ns []int) (int, error) {
			executions.Add(1)
			ids := make([]int64, len(ns))
			for i, n := range ns {
				wf := square
				if n < 0 {
					wf = idle
				}
				id, err := StartChild(ctx, run, fmt.Sprintf("child/%d", i), wf, n)
				if err != nil {
					return 0, err
				}
				ids[i] = id
			}
			squares, err := AwaitChildren[int](ctx, run, "all", ids...)
			if err != nil {
				return 0, err
			}
			sum := 0
			for _, v := range squares {
				sum += v
			}
			return sum, nil
		})
		for _, w := range []interface {
			Register(context.Context, *Store) error
		}{square, idle, fanout} {
			if err := w.Register(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		ns := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
		parent, err := fanout.Trigger(ctx, s, ns)
		if err != nil {
			t.Fatal(err)
		}
		stopParents := serveInBackground(t, s, fanout, fastPoll)
		await(t, 10*time.Second, "the parent to start its children and wait", func() bool {
			m := metrics(t, s, "fanout")
			return len(runStatus(t, s, parent).Steps) == len(ns) && m.Delayed == 1 && m.Leased == 0
		})
		started := time.Now()
		serveInBackground(t, s, square, fastPoll)
		sum, err := waitResult(t, s, fanout, parent)
		if err != nil || sum != 385 {
			t.Fatalf("fan-in = %d, %v, want 385", sum, err)
		}
		if waited := time.Since(started); waited > 5*time.Second {
			t.Errorf("the parent continued %v after its children could run: not woken by them", waited)
		}
		runs, err := s.Runs().List(ctx, RunFilter{Workflow: "square"})
		if err != nil {
			t.Fatal(err)
		}
		if len(runs) != len(ns) {
			t.Errorf("%d child runs, want %d (one per StartChild step)", len(runs), len(ns))
		}
		for _, r := range runs {
			if r.Parent != parent {
				t.Errorf("child run %d has parent %d, want %d", r.ID, r.Parent, parent)
			}
		}
		if executions.Load() < 2 {
			t.Errorf("the parent executed %d times; it should have waited and replayed", executions.Load())
		}

		failing, err := fanout.Trigger(ctx, s, []int{2, 13})
		if err != nil {
			t.Fatal(err)
		}
		_, err = waitResult(t, s, fanout, failing)
		var re *RunError
		if !errors.As(err, &re) || !strings.Contains(re.Message, "child run") || !strings.Contains(re.Message, "unlucky") {
			t.Errorf("parent of a failed child = %v, want its failure naming the child's error", err)
		}

		doomed, err := fanout.Trigger(ctx, s, []int{-1, -2})
		if err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "the doomed parent to wait for its children", func() bool {
			return len(runStatus(t, s, doomed).Steps) == 2
		})
		if _, err := s.Runs().Cancel(ctx, doomed); err != nil {
			t.Fatal(err)
		}
		kids, err := s.Runs().List(ctx, RunFilter{Workflow: "never-served"})
		if err != nil {
			t.Fatal(err)
		}
		if len(kids) != 2 {
			t.Fatalf("%d children of the doomed parent, want 2", len(kids))
		}
		for _, k := range kids {
			if k.Status != RunCancelled {
				t.Errorf("child %d of a cancelled parent is %s, want CANCELLED", k.ID, k.Status)
			}
		}
		if _, err := waitResult(t, s, fanout, doomed); !errors.Is(err, ErrRunCancelled) {
			t.Errorf("cancelled parent = %v", err)
		}
		if err := stopParents(); err != nil {
			t.Fatal(err)
		}
	})
}

func TestWorkflowUnicodeNameAndNoInput(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("архив-文件-é", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			return Step(ctx, run, "名前 with spaces", func(context.Context) (string, error) { return "ünïcödé ✓", nil })
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		if got, err := waitResult(t, s, wf, id); err != nil || got != "ünïcödé ✓" {
			t.Fatalf("result = %q, %v", got, err)
		}
		wfs, err := s.Admin().ListWorkflows(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(wfs) != 1 || wfs[0].Name != "архив-文件-é" || wfs[0].Runs[RunSucceeded] != 1 {
			t.Errorf("workflows = %+v", wfs)
		}

		// A workflow whose input is nothing at all.
		bare := NewWorkflow("bare", func(ctx context.Context, run *Run, in any) (bool, error) {
			return in == nil, nil
		})
		if err := bare.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		id, err = bare.Trigger(ctx, s, nil)
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, bare, fastPoll)
		if got, err := waitResult(t, s, bare, id); err != nil || !got {
			t.Fatalf("no-input result = %v, %v", got, err)
		}
		if n, err := s.Runs().Purge(ctx, "bare", time.Now().Add(time.Minute)); err != nil || n != 1 {
			t.Errorf("purge finished runs = %d, %v; want 1", n, err)
		}
		_, err = s.Runs().Get(ctx, id)
		wantErr(t, err, ErrRunNotFound)
	})
}

func TestWorkflowBadInput(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		ok := func(ctx context.Context, run *Run, in int) (int, error) { return in, nil }
		wf := NewWorkflow("unregistered", ok)
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = wf.TriggerTx(ctx, tx, s, 1)
		wantErr(t, err, ErrWorkflowNotFound)
		tx.Rollback()
		wantErr(t, NewWorkflow("bad name", ok).Register(ctx, s), ErrInvalidName)
		wantErr(t, NewWorkflow[int, int]("nil", nil).Register(ctx, s), ErrInvalidArgument)
		if _, err := s.Admin().CreateQueue(ctx, "plain"); err != nil {
			t.Fatal(err)
		}
		wantErr(t, NewWorkflow("plain", ok).Register(ctx, s), ErrQueueExists)
		_, err = s.Runs().Get(ctx, 424242)
		wantErr(t, err, ErrRunNotFound)
		_, err = s.Runs().List(ctx, RunFilter{Status: "DONE"})
		wantErr(t, err, ErrInvalidArgument)
		_, err = s.Runs().List(ctx, RunFilter{Workflow: "nope"})
		wantErr(t, err, ErrWorkflowNotFound)

		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		// A workflow's queue drives its runs: it cannot be purged or deleted.
		_, err = s.Admin().PurgeQueue(ctx, "unregistered")
		wantErr(t, err, ErrQueueInUse)
		wantErr(t, s.Admin().DeleteQueue(ctx, "unregistered"), ErrQueueInUse)
		_, err = s.Runs().List(ctx, RunFilter{Limit: 100000})
		wantErr(t, err, ErrBatchTooLarge)
		_, err = wf.Trigger(ctx, s, 1, Delay(-time.Second))
		wantErr(t, err, ErrInvalidArgument)
		_, err = NewWorkflow("unregistered", func(ctx context.Context, run *Run, in chan int) (int, error) { return 0, nil }).
			Trigger(ctx, s, make(chan int))
		wantErr(t, err, ErrInvalidPayload)
		_, err = wf.TriggerTx(ctx, nil, s, 1)
		wantErr(t, err, ErrInvalidArgument)
		bad := NewWorkflow("unregistered", func(ctx context.Context, run *Run, in string) (int, error) {
			_, err := Step(ctx, run, "", func(context.Context) (int, error) { return 0, nil })
			return 0, err
		})
		_, err = bad.Trigger(ctx, s, strings.Repeat("x", 2<<20))
		wantErr(t, err, ErrPayloadTooLarge)
		if err := Sleep(ctx, nil, "x", -time.Second); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("negative sleep = %v", err)
		}
	})
}

// TestWorkflowTriggerBatch starts many runs in one call, in and out of the
// caller's transaction: every run executes once with its own input, a rolled
// back batch leaves nothing, and bad batches are refused whole.
func TestWorkflowTriggerBatch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var executions atomic.Int64
		wf := NewWorkflow("batched", func(ctx context.Context, run *Run, in string) (string, error) {
			return Step(ctx, run, "upper", func(context.Context) (string, error) {
				executions.Add(1)
				return strings.ToUpper(in), nil
			})
		})
		ins := make([]string, 40)
		for i := range ins {
			ins[i] = fmt.Sprintf("run-%02d", i)
		}
		ids, err := wf.TriggerBatch(ctx, s, ins, Priority(3))
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != len(ins) || !slices.IsSorted(ids) {
			t.Fatalf("TriggerBatch = %v, want %d ascending IDs", ids, len(ins))
		}
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		gone, err := wf.TriggerBatchTx(ctx, tx, s, []string{"x", "y"})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		for _, id := range gone {
			_, err := s.Runs().Get(ctx, id)
			wantErr(t, err, ErrRunNotFound)
		}
		tx, err = s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		kept, err := wf.TriggerBatchTx(ctx, tx, s, []string{"in-tx"})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		for i, id := range append(ids, kept...) {
			want := "IN-TX"
			if i < len(ins) {
				want = strings.ToUpper(ins[i])
			}
			if got, err := waitResult(t, s, wf, id); err != nil || got != want {
				t.Errorf("run %d = %q, %v, want %q", id, got, err, want)
			}
		}
		if n := executions.Load(); n != int64(len(ins)+1) {
			t.Errorf("%d step executions, want %d", n, len(ins)+1)
		}
		if empty, err := wf.TriggerBatch(ctx, s, nil); err != nil || len(empty) != 0 {
			t.Errorf("empty batch = %v, %v", empty, err)
		}
		bad := NewWorkflow("batched-bad", func(ctx context.Context, run *Run, in any) (int, error) { return 0, nil })
		_, err = bad.TriggerBatch(ctx, s, []any{1, math.NaN()})
		if !errors.Is(err, ErrInvalidPayload) || !strings.Contains(err.Error(), "input 1") {
			t.Errorf("batch with an unencodable input = %v, want ErrInvalidPayload naming input 1", err)
		}
		_, err = bad.TriggerBatch(ctx, s, make([]any, s.cfg.maxBatch+1))
		wantErr(t, err, ErrBatchTooLarge)
		_, err = bad.TriggerBatch(ctx, s, []any{1}, Priority(99))
		wantErr(t, err, ErrInvalidArgument)
	})
}

// TestWorkflowIdempotentTrigger triggers runs with a caller-chosen key: the
// same key returns the same run (with ErrDuplicate), before and after the
// run ends and from a caller's transaction, which stays usable; other
// workflows have their own keys.
func TestWorkflowIdempotentTrigger(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var executions atomic.Int64
		wf := NewWorkflow("orders", func(ctx context.Context, run *Run, in int) (int, error) {
			executions.Add(1)
			return in * 2, nil
		})
		other := NewWorkflow("refunds", func(ctx context.Context, run *Run, in int) (int, error) { return in, nil })
		for _, w := range []interface {
			Register(context.Context, *Store) error
		}{wf, other} {
			if err := w.Register(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		id, err := wf.Trigger(ctx, s, 21, Key("order-42"))
		if err != nil {
			t.Fatal(err)
		}
		again, err := wf.Trigger(ctx, s, 99, Key("order-42"))
		if !errors.Is(err, ErrDuplicate) || again != id {
			t.Fatalf("second trigger = %d, %v, want %d with ErrDuplicate", again, err, id)
		}
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		inTx, err := wf.TriggerTx(ctx, tx, s, 7, Key("order-42"))
		if !errors.Is(err, ErrDuplicate) || inTx != id {
			t.Fatalf("trigger in a tx = %d, %v, want %d with ErrDuplicate", inTx, err, id)
		}
		fresh, err := wf.TriggerTx(ctx, tx, s, 5, Key("order-43")) // the tx is still usable
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		theirs, err := other.Trigger(ctx, s, 1, Key("order-42"))
		if err != nil || theirs == id {
			t.Fatalf("another workflow's trigger with the key = %d, %v, want a run of its own", theirs, err)
		}
		serveInBackground(t, s, wf, fastPoll)
		if got, err := waitResult(t, s, wf, id); err != nil || got != 42 {
			t.Fatalf("result = %d, %v, want 42 (the first trigger's input)", got, err)
		}
		if got, err := waitResult(t, s, wf, fresh); err != nil || got != 10 {
			t.Fatalf("result of the run triggered in the tx = %d, %v", got, err)
		}
		if after, err := wf.Trigger(ctx, s, 1, Key("order-42")); !errors.Is(err, ErrDuplicate) || after != id {
			t.Errorf("trigger after the run ended = %d, %v, want %d with ErrDuplicate", after, err, id)
		}
		if info := runStatus(t, s, id); info.Key != "order-42" {
			t.Errorf("run key = %q", info.Key)
		}
		if n := executions.Load(); n != 2 {
			t.Errorf("%d executions, want 2 (one per key)", n)
		}
		if m := metrics(t, s, "orders"); m.Pending+m.Leased+m.Archived != 2 {
			t.Errorf("metrics = %+v, want the messages of two runs only", m)
		}
		_, err = wf.Trigger(ctx, s, 1, Key("k"), UniqueFor(time.Hour))
		wantErr(t, err, ErrInvalidArgument)
		_, err = wf.TriggerBatch(ctx, s, []int{1, 2}, Key("k"))
		wantErr(t, err, ErrInvalidArgument)
	})
}

// TestWorkflowIdempotentTriggerConcurrent triggers one key from many
// goroutines on separate pools at once: exactly one run exists, and every
// caller got its ID.
func TestWorkflowIdempotentTriggerConcurrent(t *testing.T) {
	t.Parallel()
	const pools, perPool = 4, 4
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			wf := NewWorkflow("keyed-race", func(ctx context.Context, run *Run, in int) (int, error) { return in, nil })
			stores := separateStores(t, b, pools)
			for _, s := range stores {
				if err := wf.Register(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			for round := range 3 {
				key := fmt.Sprintf("key-%d", round)
				ids := make([]int64, pools*perPool)
				errs := make([]error, len(ids))
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i := range ids {
					wg.Go(func() {
						<-start
						ids[i], errs[i] = wf.Trigger(ctx, stores[i%pools], i, Key(key))
					})
				}
				close(start)
				wg.Wait()
				created := 0
				for i, err := range errs {
					switch {
					case err == nil:
						created++
					case !errors.Is(err, ErrDuplicate):
						t.Fatalf("round %d, caller %d: %v", round, i, err)
					}
					if ids[i] != ids[0] {
						t.Errorf("round %d: callers got runs %d and %d", round, ids[0], ids[i])
					}
				}
				if created != 1 {
					t.Errorf("round %d: %d callers created a run, want 1", round, created)
				}
			}
			runs, err := stores[0].Runs().List(ctx, RunFilter{Workflow: "keyed-race"})
			if err != nil {
				t.Fatal(err)
			}
			if len(runs) != 3 {
				t.Errorf("%d runs exist, want 3 (one per key)", len(runs))
			}
			if m := metrics(t, stores[0], "keyed-race"); m.Pending != 3 {
				t.Errorf("metrics = %+v, want 3 pending messages (no orphan of a duplicate)", m)
			}
		})
	}
}

func TestWorkflowTriggerTx(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("in-tx", func(ctx context.Context, run *Run, in int) (int, error) { return in + 1, nil })
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		rolledBack, err := wf.TriggerTx(ctx, tx, s, 1)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		_, err = s.Runs().Get(ctx, rolledBack)
		wantErr(t, err, ErrRunNotFound)

		tx, err = s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		id, err := wf.TriggerTx(ctx, tx, s, 41)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		if got, err := waitResult(t, s, wf, id); err != nil || got != 42 {
			t.Fatalf("result = %d, %v", got, err)
		}
		if m := metrics(t, s, "in-tx"); m.Pending+m.Leased+m.Archived != 1 {
			t.Errorf("metrics = %+v, want exactly one message (the committed trigger)", m)
		}
	})
}

func TestWorkflowRetryRunFromFailedStep(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var firstCalls, secondCalls atomic.Int64
		var broken atomic.Bool
		broken.Store(true)
		wf := NewWorkflow("repairable", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			a, err := Step(ctx, run, "first", func(context.Context) (string, error) { firstCalls.Add(1); return "a", nil })
			if err != nil {
				return "", err
			}
			return Step(ctx, run, "second", func(context.Context) (string, error) {
				secondCalls.Add(1)
				if broken.Load() {
					return "", errors.New("broken dependency")
				}
				return a + "b", nil
			})
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		stop := serveInBackground(t, s, wf, fastPoll)
		_, err = waitResult(t, s, wf, id)
		wantErr(t, err, ErrRunFailed)
		runs, err := s.Runs().List(ctx, RunFilter{Workflow: "repairable", Status: RunFailed})
		if err != nil || len(runs) != 1 || runs[0].ID != id {
			t.Fatalf("failed runs = %+v, %v", runs, err)
		}
		wantErr(t, func() error { _, err := s.Runs().Cancel(ctx, id); return err }(), ErrRunFinished)

		broken.Store(false)
		if err := s.Runs().Retry(ctx, id); err != nil {
			t.Fatal(err)
		}
		if got, err := waitResult(t, s, wf, id); err != nil || got != "ab" {
			t.Fatalf("result after retry = %q, %v", got, err)
		}
		if firstCalls.Load() != 1 || secondCalls.Load() != 2 {
			t.Errorf("first ran %d times (want 1), second %d (want 2)", firstCalls.Load(), secondCalls.Load())
		}
		wantErr(t, s.Runs().Retry(ctx, id), ErrRunState)
		// Retention: finished runs older than a time go, with their steps.
		if n, err := s.Runs().Purge(ctx, "repairable", time.Now().Add(-time.Hour)); err != nil || n != 0 {
			t.Errorf("purge runs finished over an hour ago = %d, %v; want 0", n, err)
		}
		_, err = s.Runs().Purge(ctx, "nope", time.Now())
		wantErr(t, err, ErrWorkflowNotFound)
		_, err = s.Runs().Purge(ctx, "repairable", time.Time{})
		wantErr(t, err, ErrInvalidArgument)
		// A workflow is deleted with its runs and queue once nothing is live.
		wantErr(t, s.Admin().DeleteWorkflow(ctx, "nope"), ErrWorkflowNotFound)
		wantErr(t, s.Admin().DeleteWorkflow(ctx, "repairable"), ErrQueueInUse) // its worker is live
		other, err := New(s.DB(), s.Dialect(), schemaOpt(s)...)                // caches the workflow
		if err != nil {
			t.Fatal(err)
		}
		if err := wf.Register(ctx, other); err != nil {
			t.Fatal(err)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		await(t, 10*time.Second, "the last run's message to be archived", func() bool {
			return metrics(t, s, "repairable").Pending == 0
		})
		if err := s.Admin().DeleteWorkflow(ctx, "repairable"); err != nil {
			t.Fatalf("delete workflow: %v", err)
		}
		_, err = s.Runs().Get(ctx, id)
		wantErr(t, err, ErrRunNotFound)
		_, err = s.Admin().GetQueue(ctx, "repairable")
		wantErr(t, err, ErrQueueNotFound)
		if err := wf.Register(ctx, s); err != nil { // and can be registered afresh
			t.Fatal(err)
		}
		// A Store that cached the workflow before it was deleted and
		// registered afresh triggers it all the same.
		if err := s.Admin().DeleteWorkflow(ctx, "repairable"); err != nil {
			t.Fatal(err)
		}
		if err := wf.Register(ctx, other); err != nil {
			t.Fatal(err)
		}
		if _, err := wf.Trigger(ctx, other, struct{}{}); err != nil {
			t.Fatalf("trigger through a stale cache: %v", err)
		}
		if err := s.Admin().DeleteWorkflow(ctx, "repairable"); !errors.Is(err, ErrQueueInUse) {
			t.Fatalf("delete with a queued run = %v, want ErrQueueInUse", err)
		}
		if _, err := s.Admin().PurgeQueue(ctx, "repairable"); !errors.Is(err, ErrQueueInUse) {
			t.Fatalf("purge = %v", err)
		}
		if runs, err := s.Runs().List(ctx, RunFilter{Status: RunFailed}); err != nil || len(runs) != 0 {
			t.Errorf("failed runs after the retry = %+v, %v", runs, err)
		}
	})
}

// TestWorkflowConcurrentWorkers runs 200 three-step runs through 4 workers,
// each with its own Store (its own pool, as separate processes would have):
// every run completes, and every step body runs exactly once. On Turso the
// workers share one Store: sqld 0.24 can wedge when several connections
// write at once (see TURSO.md), so pgqrs serialises a process's writes.
func TestWorkflowConcurrentWorkers(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			const runs, workers = 200, 4
			ctx := t.Context()
			dsn, opts := backendDSN(t, b)
			stores := make([]*Store, workers)
			for i := range stores {
				if i > 0 && strings.HasPrefix(b, "turso") {
					stores[i] = stores[0]
					continue
				}
				s, err := Open(ctx, dsn, opts...)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				stores[i] = s
			}
			if strings.HasPrefix(b, "turso") {
				wipeTurso(t, stores[0])
			}
			if err := stores[0].Admin().Install(ctx); err != nil {
				t.Fatal(err)
			}
			var executions sync.Map // "run/step" → *atomic.Int64
			var byWorker [workers]atomic.Int64
			step := func(ctx context.Context, run *Run, name string, v int) (int, error) {
				return Step(ctx, run, name, func(context.Context) (int, error) {
					n, _ := executions.LoadOrStore(fmt.Sprintf("%d/%s", run.ID(), name), new(atomic.Int64))
					n.(*atomic.Int64).Add(1)
					return v + 1, nil
				})
			}
			flow := func(worker int) *Workflow[int, int] {
				return NewWorkflow("fanout", func(ctx context.Context, run *Run, in int) (int, error) {
					v, err := step(ctx, run, "one", in)
					if err != nil {
						return 0, err
					}
					if v, err = step(ctx, run, "two", v); err != nil {
						return 0, err
					}
					if v, err = step(ctx, run, "three", v); err == nil {
						byWorker[worker].Add(1)
					}
					return v, err
				})
			}
			if err := flow(0).Register(ctx, stores[0]); err != nil {
				t.Fatal(err)
			}
			ids := make([]int64, runs)
			for i := range ids {
				id, err := flow(0).Trigger(ctx, stores[i%workers], i*10)
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = id
			}
			for w := range workers {
				serveInBackground(t, stores[w], flow(w), &RunOptions{Concurrency: 8, PollInterval: 50 * time.Millisecond})
			}
			for i, id := range ids {
				got, err := waitResult(t, stores[i%workers], flow(0), id)
				if err != nil || got != i*10+3 {
					t.Fatalf("run %d = %d, %v; want %d", id, got, err, i*10+3)
				}
			}
			var total int64
			executions.Range(func(key, n any) bool {
				total++
				if c := n.(*atomic.Int64).Load(); c != 1 {
					t.Errorf("step %s ran %d times", key, c)
				}
				return true
			})
			if total != 3*runs {
				t.Errorf("%d step executions recorded, want %d", total, 3*runs)
			}
			var finished int64
			for w := range workers {
				finished += byWorker[w].Load()
			}
			if finished != runs {
				t.Errorf("runs finished by workers: %d, want %d", finished, runs)
			}
			t.Logf("runs per worker: %d %d %d %d", byWorker[0].Load(), byWorker[1].Load(), byWorker[2].Load(), byWorker[3].Load())
		})
	}
}

// TestWorkflowResultWakesAcrossProcesses: on Postgres a waiter in another
// Store (another pool and LISTEN connection, as in another process) is woken
// by the run's end through NOTIFY; its poll is an hour, so nothing else
// could wake it in time.
func TestWorkflowResultWakesAcrossProcesses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn, opts := backendDSN(t, "postgres")
	worker, err := Open(ctx, dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer worker.Close()
	if err := worker.Admin().Install(ctx); err != nil {
		t.Fatal(err)
	}
	waiter, err := Open(ctx, dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer waiter.Close()
	waiter.waitPoll = time.Hour
	release := make(chan struct{})
	wf := NewWorkflow("announced", func(ctx context.Context, run *Run, in int) (int, error) {
		return Step(ctx, run, "wait", func(context.Context) (int, error) { <-release; return in, nil })
	})
	if err := wf.Register(ctx, worker); err != nil {
		t.Fatal(err)
	}
	id, err := wf.Trigger(ctx, worker, 7)
	if err != nil {
		t.Fatal(err)
	}
	serveInBackground(t, worker, wf, fastPoll)
	done := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := wf.Result(wctx, waiter, id)
		done <- err
	}()
	// Let the waiter ask for an announcement; it then polls hourly.
	await(t, 10*time.Second, "the waiter to ask for an announcement", func() bool {
		var waited bool
		err := worker.DB().QueryRowContext(ctx, worker.d.qualify("SELECT waited FROM pgqrs_runs WHERE id = $1"), id).Scan(&waited)
		return err == nil && waited
	})
	close(release)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("result: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the waiter was not woken by the run's end")
	}
}

func TestWorkflowRedeliveryOfEndedOrAbandonedRuns(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var calls atomic.Int64
		wf := NewWorkflow("redelivered", func(ctx context.Context, run *Run, in int) (int, error) {
			return Step(ctx, run, "count", func(context.Context) (int, error) { calls.Add(1); return in, nil })
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		// 1. A run that ended but whose message was never archived (the
		// worker died in between) is archived without running again.
		ended, err := wf.Trigger(ctx, s, 1)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.DB().ExecContext(ctx, s.d.qualify(`UPDATE pgqrs_runs SET status = 'SUCCESS', output = '1' WHERE id = `+fmt.Sprint(ended))); err != nil {
			t.Fatal(err)
		}
		// 2. A run whose deliveries kept ending without an outcome (its
		// workers died) is failed as abandoned.
		abandoned, err := wf.Trigger(ctx, s, 2)
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Consumer(ctx, "redelivered")
		if err != nil {
			t.Fatal(err)
		}
		for range 2 { // two deliveries whose leases expire unanswered
			awaitDequeue(t, c, 10, 10*time.Second, VisibilityTimeout(50*time.Millisecond), MaxAttempts(100))
		}
		if err := c.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		// 3. A message that drives no run (a run retried with Runs.Retry moved
		// to a new message) is archived, not retried.
		p, err := s.Producer(ctx, "redelivered")
		if err != nil {
			t.Fatal(err)
		}
		mustEnqueue(t, p, map[string]string{"not": "a run"})
		serveInBackground(t, s, wf, &RunOptions{PollInterval: 50 * time.Millisecond, MaxAttempts: 2})
		_, err = waitResult(t, s, wf, abandoned)
		var re *RunError
		if !errors.As(err, &re) || !strings.Contains(re.Message, "abandoned") {
			t.Errorf("abandoned run: %v, want a failure saying it was abandoned", err)
		}
		if got, err := waitResult(t, s, wf, ended); err != nil || got != 1 {
			t.Errorf("ended run = %d, %v", got, err)
		}
		await(t, 10*time.Second, "all three messages to be archived", func() bool {
			m := metrics(t, s, "redelivered")
			return m.Archived == 3 && m.Pending+m.Leased+m.Dead == 0
		})
		if calls.Load() != 0 {
			t.Errorf("step ran %d times; neither run should have run it", calls.Load())
		}
	})
}

// TestWorkflowEndYieldsToAnEarlierRecord: an earlier execution of the run
// (its lease expired, it did not notice) recorded the last step first; this
// execution's end is not recorded, the run is given back, and the next
// delivery ends it from the recorded result without running the step again.
func TestWorkflowEndYieldsToAnEarlierRecord(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var calls atomic.Int64
		wf := NewWorkflow("overlap", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			return Step(ctx, run, "s", func(ctx context.Context) (string, error) {
				calls.Add(1)
				// The other execution records its result while this one runs.
				_, err := s.DB().ExecContext(ctx, s.d.qualify(fmt.Sprintf(
					`INSERT INTO pgqrs_steps (run_id, name, position, status, output, attempts) VALUES (%d, 's', 0, 'SUCCESS', '"theirs"', 1)`, run.ID())))
				if err == nil { // as its record would have
					_, err = s.DB().ExecContext(ctx, s.d.qualify(fmt.Sprintf(
						`UPDATE pgqrs_runs SET status = 'RUNNING', started_at = updated_at WHERE id = %d`, run.ID())))
				}
				return "mine", err
			})
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Consumer(ctx, "overlap") // the earlier delivery, whose lease expires
		if err != nil {
			t.Fatal(err)
		}
		awaitDequeue(t, c, 1, 10*time.Second, VisibilityTimeout(50*time.Millisecond))
		serveInBackground(t, s, wf, fastPoll)
		if got, err := waitResult(t, s, wf, id); err != nil || got != "theirs" {
			t.Fatalf("result = %q, %v; want the first recorded result", got, err)
		}
		if calls.Load() != 1 {
			t.Errorf("step ran %d times, want 1", calls.Load())
		}
	})
}

func TestWorkflowRefusesUnstorableJSON(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		json string
		ok   bool
	}{
		{`"a\u0000b"`, false}, {`{"k":["\u0000"]}`, false}, {`"\\u0000"`, true}, {`"\\\u0000"`, false}, {`"plain"`, true},
	} {
		if err := checkJSON([]byte(tc.json)); (err == nil) != tc.ok {
			t.Errorf("checkJSON(%s) = %v, want ok=%v", tc.json, err, tc.ok)
		}
	}
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		var calls atomic.Int64
		wf := NewWorkflow("nul", func(ctx context.Context, run *Run, _ struct{}) (string, error) {
			return Step(ctx, run, "s", func(context.Context) (string, error) { calls.Add(1); return "a\x00b", nil })
		})
		id, err := wf.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		_, err = waitResult(t, s, wf, id)
		var re *RunError
		if !errors.As(err, &re) || !strings.Contains(re.Message, "NUL") {
			t.Errorf("result = %v, want a failure naming the NUL character", err)
		}
		if calls.Load() != 1 {
			t.Errorf("step ran %d times, want 1 (not retried)", calls.Load())
		}
		in := NewWorkflow("nul-in", func(ctx context.Context, run *Run, s string) (string, error) { return s, nil })
		_, err = in.Trigger(ctx, s, "x\x00y")
		wantErr(t, err, ErrInvalidPayload)

		// Invalid UTF-8, which json.Valid accepts inside strings: refused as
		// input (Trigger, TriggerTx), and as a step result or an output it
		// fails the run, once, instead of storing a corrupt value.
		invalid := json.RawMessage("\"\x8a\"")
		raw := NewWorkflow("utf8-in", func(ctx context.Context, run *Run, in json.RawMessage) (string, error) { return "", nil })
		_, err = raw.Trigger(ctx, s, invalid)
		wantErr(t, err, ErrInvalidPayload)
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = raw.TriggerTx(ctx, tx, s, invalid)
		wantErr(t, err, ErrInvalidPayload)
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		var stepCalls atomic.Int64
		step := NewWorkflow("utf8-step", func(ctx context.Context, run *Run, _ struct{}) (json.RawMessage, error) {
			return Step(ctx, run, "s", func(context.Context) (json.RawMessage, error) { stepCalls.Add(1); return invalid, nil })
		})
		out := NewWorkflow("utf8-out", func(ctx context.Context, run *Run, _ struct{}) (json.RawMessage, error) { return invalid, nil })
		stepID, err := step.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		outID, err := out.Trigger(ctx, s, struct{}{})
		if err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, step, fastPoll)
		serveInBackground(t, s, out, fastPoll)
		_, err = waitResult(t, s, step, stepID)
		if !errors.As(err, &re) || !strings.Contains(re.Message, "UTF-8") {
			t.Errorf("step result: %v, want a failure naming UTF-8", err)
		}
		if stepCalls.Load() != 1 {
			t.Errorf("step ran %d times, want 1 (not retried)", stepCalls.Load())
		}
		_, err = waitResult(t, s, out, outID)
		if !errors.As(err, &re) || !strings.Contains(re.Message, "UTF-8") {
			t.Errorf("output: %v, want a failure naming UTF-8", err)
		}
	})
}

// TestRunsOnClosedStore: after Close, every run operation returns
// ErrClosed, as every other method of a Store does, also through a *Runs
// obtained before Close and for a run and a workflow that exist.
func TestRunsOnClosedStore(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a Wait that does not refuse fails, not hangs
		defer cancel()
		wf := NewWorkflow("closing", func(ctx context.Context, run *Run, in int) (int, error) { return in, nil })
		id, err := wf.Trigger(ctx, s, 1)
		if err != nil {
			t.Fatal(err)
		}
		runs := s.Runs()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		_, err = runs.Get(ctx, id)
		wantErr(t, err, ErrClosed)
		_, err = runs.Wait(ctx, id)
		wantErr(t, err, ErrClosed)
		_, err = runs.Cancel(ctx, id)
		wantErr(t, err, ErrClosed)
		wantErr(t, runs.Resume(ctx, id), ErrClosed)
		wantErr(t, runs.Retry(ctx, id), ErrClosed)
		_, err = runs.List(ctx, RunFilter{})
		wantErr(t, err, ErrClosed)
		_, err = runs.List(ctx, RunFilter{Workflow: "closing"})
		wantErr(t, err, ErrClosed)
		_, err = runs.Purge(ctx, "closing", time.Now())
		wantErr(t, err, ErrClosed)
		_, err = s.Runs().Get(ctx, id)
		wantErr(t, err, ErrClosed)
		_, err = wf.Result(ctx, s, id)
		wantErr(t, err, ErrClosed)
		_, err = s.Admin().ListWorkflows(ctx)
		wantErr(t, err, ErrClosed)
		wantErr(t, s.Admin().DeleteWorkflow(ctx, "closing"), ErrClosed)
	})
}
