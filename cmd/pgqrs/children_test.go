package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// TestWorkflowShowChildren shows a parent run's children, and a child's
// parent, with workflow show.
func TestWorkflowShowChildren(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		s := b.store()
		child := pgqrs.NewWorkflow("cli-child", func(ctx context.Context, run *pgqrs.Run, n int) (int, error) { return n, nil })
		parent := pgqrs.NewWorkflow("cli-parent", func(ctx context.Context, run *pgqrs.Run, n int) (int, error) {
			ids := make([]int64, n)
			for i := range ids {
				id, err := pgqrs.StartChild(ctx, run, fmt.Sprintf("child/%d", i), child, i)
				if err != nil {
					return 0, err
				}
				ids[i] = id
			}
			outs, err := pgqrs.AwaitChildren[int](ctx, run, "all", ids...)
			return len(outs), err
		})
		if err := child.Register(t.Context(), s); err != nil {
			t.Fatal(err)
		}
		id, err := parent.Trigger(t.Context(), s, 2, pgqrs.Key("cli-order"))
		if err != nil {
			t.Fatal(err)
		}
		serve(t, s, parent)
		serve(t, s, child)
		var shown struct {
			Status   pgqrs.RunStatus `json:"status"`
			Key      string          `json:"key"`
			Children []childJSON     `json:"children"`
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			b.json(&shown, "workflow", "show", itoa(id))
			if shown.Status == pgqrs.RunSucceeded {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("parent run %d did not finish: %+v", id, shown)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if shown.Key != "cli-order" || len(shown.Children) != 2 {
			t.Fatalf("workflow show --json = %+v, want the key and 2 children", shown)
		}
		for _, c := range shown.Children {
			if c.Workflow != "cli-child" || c.Status != pgqrs.RunSucceeded {
				t.Errorf("child = %+v, want a finished cli-child", c)
			}
		}
		out := b.ok("workflow", "show", itoa(id))
		for _, want := range []string{"key", "cli-order", "CHILD  WORKFLOW   STATUS", "cli-child  SUCCESS"} {
			if !strings.Contains(out, want) {
				t.Errorf("workflow show of a parent lacks %q:\n%s", want, out)
			}
		}
		out = b.ok("workflow", "show", itoa(shown.Children[0].ID))
		if !strings.Contains(out, "parent") || !strings.Contains(out, itoa(id)) {
			t.Errorf("workflow show of a child lacks its parent %d:\n%s", id, out)
		}
	})
}
