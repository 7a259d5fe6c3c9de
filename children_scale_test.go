package pgqrs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// fanFlows are a parent workflow that starts n children (prefix-child)
// and returns the sum of their results, each child doubling its index.
// With hangAt ≥ 0 the parent stops for good right after StartChild of that
// child returned, printing "STARTED <run>" for a crash test to kill it by:
// the child run is committed, the parent's record of it is not.
func fanFlows(prefix string, hangAt int) (parent, child *Workflow[int, int]) {
	child = NewWorkflow(prefix+"-child", func(ctx context.Context, run *Run, n int) (int, error) {
		return Step(ctx, run, "double", func(context.Context) (int, error) { return 2 * n, nil })
	})
	parent = NewWorkflow(prefix+"-parent", func(ctx context.Context, run *Run, n int) (int, error) {
		ids := make([]int64, n)
		for i := range n {
			id, err := StartChild(ctx, run, fmt.Sprintf("child/%d", i), child, i)
			if err != nil {
				return 0, err
			}
			ids[i] = id
			if i == hangAt {
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

// TestWorkflowChildrenAcrossPools runs 200 parents of 10 children each
// through 4 workers on separate pools (each serves parents and children):
// every parent gets the sum of its children's results, and exactly one
// child run exists per StartChild step. On Turso the fan is smaller (sqld
// wedges under many concurrent writers, see docs/turso.md).
func TestWorkflowChildrenAcrossPools(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			parents, kids, workers := 200, 10, 4
			if strings.HasPrefix(b, "turso") {
				parents, workers = 20, 2
			}
			ctx := t.Context()
			parent, child := fanFlows("scale", -1)
			stores := separateStores(t, b, workers)
			for _, s := range stores {
				for _, w := range []interface {
					Register(context.Context, *Store) error
				}{child, parent} {
					if err := w.Register(ctx, s); err != nil {
						t.Fatal(err)
					}
				}
			}
			ids := make([]int64, parents)
			for i := range ids {
				id, err := parent.Trigger(ctx, stores[i%workers], kids)
				if err != nil {
					t.Fatal(err)
				}
				ids[i] = id
			}
			sctx, cancel := context.WithCancel(ctx)
			var wg sync.WaitGroup
			errs := make(chan error, 2*workers)
			o := &RunOptions{Concurrency: 8, PollInterval: 100 * time.Millisecond}
			for _, s := range stores {
				wg.Go(func() { errs <- parent.Serve(sctx, s, o) })
				wg.Go(func() { errs <- child.Serve(sctx, s, o) })
			}
			want := kids * (kids - 1)
			// One deadline for the whole fan: under -race beside the rest
			// of the suite, SQLite's four pools contending for one file
			// took over two minutes before the first parent finished
			// (72 s for all of them with little else running).
			wctx, wcancel := context.WithTimeout(ctx, 8*time.Minute)
			defer wcancel()
			for _, id := range ids {
				got, err := parent.Result(wctx, stores[0], id)
				if err != nil || got != want {
					t.Fatalf("parent %d = %d, %v, want %d", id, got, err, want)
				}
			}
			cancel()
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Errorf("serve: %v", err)
				}
			}
			var children []RunInfo
			for before := int64(0); ; {
				page, err := stores[0].Runs().List(ctx, RunFilter{Workflow: child.Name(), Before: before, Limit: 1000})
				if err != nil {
					t.Fatal(err)
				}
				children = append(children, page...)
				if len(page) < 1000 {
					break
				}
				before = page[len(page)-1].ID
			}
			if len(children) != parents*kids {
				t.Errorf("%d child runs, want %d (one per StartChild step)", len(children), parents*kids)
			}
			perParent := map[int64]int{}
			for _, c := range children {
				perParent[c.Parent]++
				if c.Status != RunSucceeded {
					t.Errorf("child %d is %s", c.ID, c.Status)
				}
			}
			for _, id := range ids {
				if perParent[id] != kids {
					t.Errorf("parent %d has %d children, want %d", id, perParent[id], kids)
				}
			}
		})
	}
}
