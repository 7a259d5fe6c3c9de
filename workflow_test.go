package pgqrs

import (
	"context"
	"errors"
	"fmt"
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
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- wf.Serve(ctx, s, o) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(60 * time.Second):
				err = errors.New("Serve did not return within 60s of cancel")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
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
	info, err := s.RunStatus(t.Context(), id)
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
