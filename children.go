package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
)

// Child workflows: a run starts runs of any workflow as its children and
// waits for them without holding a worker. A child's ID is recorded as a
// step of the parent, and the child's trigger carries a key derived from
// the parent and the step (a replay that runs the step again finds the
// same child); the last awaited child's end makes the parent's message
// visible again; cancelling the parent cancels its unfinished children.

// childKey is the run key of the child run starts under step name: unique
// per parent and step, so a step run again triggers no second child.
func childKey(parent int64, name string) string {
	return "pgqrs.child/" + strconv.FormatInt(parent, 10) + "/" + name
}

// childOf makes a trigger's run the child of parent.
func childOf(parent int64) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		c.parent = parent
		return nil
	})
}

// StartChild starts a run of wf with input in as a child of run, as the
// step name, and returns the child's run ID. The ID is recorded like any
// step's result, so a replay returns it without starting another child;
// opts are as for [Workflow.Trigger] (a [Key] is not allowed: the child's
// key is derived from the parent and the step). Start many children with
// many StartChild steps, then wait for them together with
// [AwaitChildren]: they run in parallel on the child workflow's workers.
// The child workflow is registered in the database if it is not yet, as
// [Workflow.Trigger] does; someone must serve it. The child's key is
// "pgqrs.child/<parent ID>/<name>", so name must keep it within
// [MaxKeyBytes] (about 480 bytes of name); a longer one fails the step with
// [ErrInvalidArgument].
func StartChild[In, Out any](ctx context.Context, run *Run, name string, wf *Workflow[In, Out], in In, opts ...EnqueueOption) (int64, error) {
	if run == nil || wf == nil {
		return 0, fmt.Errorf("%w: StartChild needs a run and a workflow", ErrInvalidArgument)
	}
	for _, o := range opts {
		var c enqueueConfig
		if o != nil && o.applyEnqueue(&c) == nil && c.key != "" {
			return 0, fmt.Errorf("%w: StartChild takes no Key; the child's key is the parent's and the step's", ErrInvalidArgument)
		}
	}
	return Step(ctx, run, name, func(ctx context.Context) (int64, error) {
		o := append(slices.Clip(opts), childOf(run.id), Key(childKey(run.id, name)))
		id, err := wf.Trigger(ctx, run.e.s, in, o...)
		if errors.Is(err, ErrDuplicate) {
			return id, nil // started by an earlier execution of this step
		}
		if errors.Is(err, ErrWorkflowNotFound) || errors.Is(err, ErrInvalidPayload) || errors.Is(err, ErrPayloadTooLarge) || errors.Is(err, ErrInvalidArgument) {
			return 0, Permanent(err)
		}
		return id, err
	})
}

// ChildError is a child run's failure or cancellation as [AwaitChildren]
// returns it. It wraps [ErrRunFailed] or [ErrRunCancelled].
type ChildError struct {
	Child   int64
	Status  RunStatus // ERROR or CANCELLED
	Message string    // the child's recorded error text
}

func (e *ChildError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("pgqrs: child run %d ended %s", e.Child, e.Status)
	}
	return fmt.Sprintf("pgqrs: child run %d ended %s: %s", e.Child, e.Status, e.Message)
}

// Unwrap returns [ErrRunCancelled] for a cancelled child, else
// [ErrRunFailed].
func (e *ChildError) Unwrap() error {
	if e.Status == RunCancelled {
		return ErrRunCancelled
	}
	return ErrRunFailed
}

// AwaitChildren waits, as the step name, until every child run of ids
// (started by run with [StartChild]) has ended, and returns their outputs
// decoded into Out, in the order of ids. While any is unfinished the run
// is suspended: it holds no worker and no lease, and the last child's end
// makes it continue. The outcomes are recorded as the step's result, so a
// replay returns the same answer. If a child failed or was cancelled,
// AwaitChildren returns the outputs of the others and a [*ChildError] for
// the first such child in ids; an ID that is not a child of run returns
// [ErrInvalidArgument]. Like [Step], the error may be [ErrSuspended],
// which the workflow function must return.
func AwaitChildren[Out any](ctx context.Context, run *Run, name string, ids ...int64) ([]Out, error) {
	if run == nil {
		return nil, fmt.Errorf("%w: nil *Run", ErrInvalidArgument)
	}
	if len(ids) == 0 {
		return []Out{}, nil
	}
	run.mu.Lock()
	_, recorded := run.steps[name]
	blocked := run.diverged != nil || run.suspend != nil || run.cancelled
	run.mu.Unlock()
	if !recorded && !blocked {
		outcomes, err := run.e.s.childOutcomes(ctx, run.id, ids)
		if err != nil {
			return nil, err
		}
		for _, c := range outcomes {
			if !c.Status.Finished() {
				if err := run.flush(ctx); err != nil { // the children's IDs are durable first
					return nil, err
				}
				run.mu.Lock()
				defer run.mu.Unlock()
				err := run.suspendUntil(run.now().Add(maxSuspend))
				run.suspend.children = slices.Clone(ids)
				return nil, err
			}
		}
	}
	out, err := run.step(ctx, name, nil, func(ctx context.Context) (json.RawMessage, error) {
		outcomes, err := run.e.s.childOutcomes(ctx, run.id, ids)
		if err != nil {
			return nil, err
		}
		for _, c := range outcomes {
			if !c.Status.Finished() {
				// Ended a moment ago, then restarted (Runs.Retry): wait again.
				return nil, Transient(fmt.Errorf("child run %d is %s again", c.ID, c.Status))
			}
		}
		return json.Marshal(outcomes)
	})
	if err != nil {
		return nil, err
	}
	var outcomes []childOutcome
	if err := json.Unmarshal(out, &outcomes); err != nil {
		return nil, fmt.Errorf("await %q: decode recorded outcomes: %w", name, err)
	}
	results := make([]Out, len(outcomes))
	var first error
	for i, c := range outcomes {
		if c.Status != RunSucceeded {
			if first == nil {
				first = &ChildError{Child: c.ID, Status: c.Status, Message: c.Error}
			}
			continue
		}
		if err := json.Unmarshal(c.Output, &results[i]); err != nil {
			return nil, fmt.Errorf("await %q: decode output of child run %d: %w", name, c.ID, err)
		}
	}
	return results, first
}

// childOutcomes reads how each child run of ids stands, in the order of
// ids; an ID that is not parent's child returns [ErrInvalidArgument].
func (s *Store) childOutcomes(ctx context.Context, parent int64, ids []int64) ([]childOutcome, error) {
	var got []childOutcome
	err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
		got, err = s.runs.children(ctx, q, ids, parent)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("children of run %d: %w", parent, err)
	}
	byID := make(map[int64]childOutcome, len(got))
	for _, c := range got {
		byID[c.ID] = c
	}
	out := make([]childOutcome, len(ids))
	for i, id := range ids {
		c, ok := byID[id]
		if !ok {
			return nil, Permanent(fmt.Errorf("%w: run %d is not a child of run %d", ErrInvalidArgument, id, parent))
		}
		out[i] = c
	}
	return out, nil
}

// childrenEnded reports whether every child of ids has ended (false when
// that cannot be read).
func (s *Store) childrenEnded(ctx context.Context, parent int64, ids []int64) bool {
	outcomes, err := s.childOutcomes(ctx, parent, ids)
	if err != nil {
		return false
	}
	for _, c := range outcomes {
		if !c.Status.Finished() {
			return false
		}
	}
	return true
}

// wakeParent makes the waiting message of child's parent run visible now
// and wakes this process's workers of the parent's queue.
func (s *Store) wakeParent(ctx context.Context, child int64) error {
	var queueID int64
	err := s.write(ctx, nil, func(ctx context.Context, q querier) (err error) {
		queueID, err = s.runs.wakeParent(ctx, q, child)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil // the parent does not wait (yet): it looks for itself
	}
	if err != nil {
		return err
	}
	s.wake(queueWake(queueID))
	return nil
}
