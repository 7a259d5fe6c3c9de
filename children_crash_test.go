package pgqrs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// fanFlows are the workflows of TestFanOutCrashRecovery: a parent that
// starts n children and sums their doubled indexes. With hang it stops for
// good right after StartChild of child 50 returned, while that step's
// record is still waiting for the parent's next write: the child run is
// committed, the parent's record of it is not.
func fanFlows(hang bool) (parent *Workflow[int, int], child *Workflow[int, int]) {
	child = NewWorkflow("fan-crash-child", func(ctx context.Context, run *Run, n int) (int, error) {
		return Step(ctx, run, "double", func(context.Context) (int, error) { return 2 * n, nil })
	})
	parent = NewWorkflow("fan-crash-parent", func(ctx context.Context, run *Run, n int) (int, error) {
		ids := make([]int64, n)
		for i := range n {
			id, err := StartChild(ctx, run, fmt.Sprintf("child/%d", i), child, i)
			if err != nil {
				return 0, err
			}
			ids[i] = id
			if hang && i == 50 {
				fmt.Printf("STARTED %d\n", run.ID())
				select {} // hang until killed
			}
		}
		outs, err := AwaitChildren[int](ctx, run, "all", ids...)
		if err != nil {
			return 0, err
		}
		sum := 0
		for _, v := range outs {
			sum += v
		}
		return sum, nil
	})
	return parent, child
}

// TestFanOutCrashChild is the process TestFanOutCrashRecovery kills.
func TestFanOutCrashChild(t *testing.T) {
	s := childStore(t, "PGQRS_FANCRASH_DSN", "TestFanOutCrashRecovery")
	parent, _ := fanFlows(true)
	err := parent.Serve(context.Background(), s, &RunOptions{Concurrency: 1, VisibilityTimeout: time.Second, HeartbeatInterval: 100 * time.Millisecond})
	t.Fatalf("Serve returned %v; it should have been killed", err)
}

// TestFanOutCrashRecovery kills a worker process in the middle of a
// fan-out of 100 children, between a child's start and the parent's record
// of it. A new worker finishes the parent: every child started exactly
// once (the replayed StartChild found the child the dead process started),
// and the fan-in is right.
func TestFanOutCrashRecovery(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dsn, s := crashStore(t, b)
			parent, child := fanFlows(false)
			for _, w := range []interface {
				Register(context.Context, *Store) error
			}{parent, child} {
				if err := w.Register(ctx, s); err != nil {
					t.Fatal(err)
				}
			}
			const n = 100
			id, err := parent.Trigger(ctx, s, n)
			if err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestFanOutCrashChild$", "-test.count=1", "-test.timeout=5m")
			cmd.Env = append(os.Environ(), "PGQRS_FANCRASH_DSN="+dsn, "PGQRS_CRASH_SCHEMA="+s.d.schema)
			if started := startChild(t, cmd, 1); len(started) != 1 || started[0] != id {
				t.Fatalf("the killed worker reached the middle of runs %v, want [%d]", started, id)
			}
			if steps := len(runStatus(t, s, id).Steps); steps > 51 {
				t.Fatalf("the parent recorded %d steps before the kill; child 50's record should be pending", steps)
			}
			serveInBackground(t, s, parent, fastPoll)
			serveInBackground(t, s, child, fastPoll)
			sum, err := waitResult(t, s, parent, id)
			if want := n * (n - 1); err != nil || sum != want {
				t.Fatalf("fan-in = %d, %v, want %d", sum, err, want)
			}
			kids, err := s.Runs().List(ctx, RunFilter{Parent: id, Limit: 1000})
			if err != nil {
				t.Fatal(err)
			}
			if len(kids) != n {
				t.Errorf("%d children, want %d: a replayed StartChild started another", len(kids), n)
			}
			seen := map[string]bool{}
			for _, k := range kids {
				if seen[k.Key] {
					t.Errorf("two children with key %q", k.Key)
				}
				seen[k.Key] = true
			}
		})
	}
}
