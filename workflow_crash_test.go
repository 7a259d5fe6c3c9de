package pgqrs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"
)

// TestFanOutCrashChild is the process TestFanOutCrashRecovery kills.
func TestFanOutCrashChild(t *testing.T) {
	s := childStore(t, "PGQRS_FANCRASH_DSN", "TestFanOutCrashRecovery")
	parent, _ := fanFlows("fan-crash", 50)
	err := parent.Serve(context.Background(), s, &RunOptions{Concurrency: 1, VisibilityTimeout: time.Second, HeartbeatInterval: 100 * time.Millisecond})
	t.Fatalf("Serve returned %v; it should have been killed", err)
}

// TestFanOutCrashRecovery kills a worker process in the middle of a
// fan-out of 100 children, between a child's start and the parent's record
// of it (fanFlows hangs right after StartChild of child 50 returned, while
// that step's record still waits for the parent's next write). A new worker finishes the parent: every child started exactly
// once (the replayed StartChild found the child the dead process started),
// and the fan-in is right.
func TestFanOutCrashRecovery(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dsn, s := crashStore(t, b)
			parent, child := fanFlows("fan-crash", -1)
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

// patchFlow is the workflow of TestPatchCrashRecovery: a step, a patch
// check, then the new path's step. With hang it stops for good right after
// the check returned, while the check's record waits for the next write.
func patchFlow(hang bool) *Workflow[int, string] {
	return NewWorkflow("patch-crash", func(ctx context.Context, run *Run, n int) (string, error) {
		if _, err := Step(ctx, run, "reserve", func(context.Context) (int, error) { return n, nil }); err != nil {
			return "", err
		}
		ok, err := Patched(ctx, run, "v2")
		if err != nil {
			return "", err
		}
		if hang {
			fmt.Printf("STARTED %d\n", run.ID())
			select {} // hang until killed
		}
		if !ok {
			return Step(ctx, run, "charge", func(context.Context) (string, error) { return "old", nil })
		}
		return Step(ctx, run, "charge-v2", func(context.Context) (string, error) { return "new", nil })
	})
}

// TestPatchCrashChild is the process TestPatchCrashRecovery kills.
func TestPatchCrashChild(t *testing.T) {
	s := childStore(t, "PGQRS_PATCHCRASH_DSN", "TestPatchCrashRecovery")
	err := patchFlow(true).Serve(context.Background(), s, &RunOptions{Concurrency: 2, VisibilityTimeout: time.Second, HeartbeatInterval: 100 * time.Millisecond})
	t.Fatalf("Serve returned %v; it should have been killed", err)
}

// TestPatchCrashRecovery kills a worker process between a patch check and
// the next step of two runs: a new worker finishes both on the new path,
// with the patch recorded once at its position and no nondeterminism.
func TestPatchCrashRecovery(t *testing.T) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			dsn, s := crashStore(t, b)
			wf := patchFlow(false)
			if err := wf.Register(ctx, s); err != nil {
				t.Fatal(err)
			}
			var runs []int64
			for i := range 2 {
				id, err := wf.Trigger(ctx, s, i)
				if err != nil {
					t.Fatal(err)
				}
				runs = append(runs, id)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestPatchCrashChild$", "-test.count=1", "-test.timeout=5m")
			cmd.Env = append(os.Environ(), "PGQRS_PATCHCRASH_DSN="+dsn, "PGQRS_CRASH_SCHEMA="+s.d.schema)
			if started := startChild(t, cmd, 2); len(started) != 2 {
				t.Fatalf("the killed worker passed the check of %v, want both runs", started)
			}
			serveInBackground(t, s, wf, fastPoll)
			for _, id := range runs {
				got, err := waitResult(t, s, wf, id)
				if err != nil || got != "new" {
					t.Errorf("run %d = %q, %v, want the new path", id, got, err)
				}
				var names []string
				for _, st := range runStatus(t, s, id).Steps {
					names = append(names, st.Name)
				}
				if want := "reserve pgqrs.patch/v2 charge-v2"; fmt.Sprint(names) != "["+want+"]" {
					t.Errorf("run %d steps = %v, want [%s]", id, names, want)
				}
			}
		})
	}
}
