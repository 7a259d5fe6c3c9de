package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// RunInfo is a workflow run as stored.
type RunInfo struct {
	ID       int64           `json:"id"`
	Workflow string          `json:"workflow"`
	Status   RunStatus       `json:"status"`
	Input    json.RawMessage `json:"input"`
	Output   json.RawMessage `json:"output,omitempty"` // SUCCESS only
	Error    string          `json:"error,omitempty"`  // ERROR: what failed the run; CANCELLED by its deadline: that
	// ResumeAt is when a PAUSED run continues by itself (zero: only when
	// resumed).
	ResumeAt   time.Time `json:"resume_at,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	StartedAt  time.Time `json:"started_at,omitzero"`  // zero until a worker started the run
	FinishedAt time.Time `json:"finished_at,omitzero"` // zero until the run ended
	UpdatedAt  time.Time `json:"updated_at"`
	// Deadline is when the run is cancelled if it has not finished (set by
	// [Timeout] at trigger time); zero: never.
	Deadline time.Time `json:"deadline,omitzero"`
	// Key is the run's caller-chosen key ([Key] at trigger time); "" for
	// none.
	Key string `json:"key,omitempty"`
	// Parent is the run that started this one with [StartChild]; 0 for
	// none.
	Parent int64 `json:"parent,omitempty"`
	// Steps are the run's recorded steps in the order the run reached them
	// (filled by [Runs.Get] and [Runs.Wait], never nil there; nil in lists,
	// and then left out of JSON).
	Steps []StepInfo `json:"steps,omitzero"`
}

// StepStatus is the recorded outcome of a step.
type StepStatus string

// A step is recorded when it completes (SUCCESS, with its result; a [Sleep]
// records its wake-up time) and when an attempt fails (ERROR, with the
// error and, while retries remain, the time of the next attempt).
const (
	StepSucceeded StepStatus = "SUCCESS"
	StepFailed    StepStatus = "ERROR"
)

// StepInfo is one recorded step of a run.
type StepInfo struct {
	Position int             `json:"position"` // 0 for the first step the run reached, and so on
	Name     string          `json:"name"`
	Status   StepStatus      `json:"status"`
	Attempts int             `json:"attempts"`
	Output   json.RawMessage `json:"output,omitempty"`
	Error    string          `json:"error,omitempty"`
	// RetryAt is when a failed step runs again (zero: it will not).
	RetryAt   time.Time `json:"retry_at,omitzero"`
	UpdatedAt time.Time `json:"updated_at"`
}

// WorkflowInfo is a registered workflow and how many runs it has per status.
type WorkflowInfo struct {
	Name      string              `json:"name"`
	CreatedAt time.Time           `json:"created_at"`
	Runs      map[RunStatus]int64 `json:"-"` // in JSON: "runs", every status in lower case
}

// runStatuses are every run status, in the order of a run's life.
var runStatuses = []RunStatus{RunQueued, RunRunning, RunPaused, RunCancelling, RunCancelled, RunSucceeded, RunFailed}

// MarshalJSON writes the run counts as "runs" with every status as a
// lower-case key, 0 when none.
func (w WorkflowInfo) MarshalJSON() ([]byte, error) {
	type fields WorkflowInfo // without this method
	runs := make(map[string]int64, len(runStatuses))
	for _, st := range runStatuses {
		runs[strings.ToLower(string(st))] = w.Runs[st]
	}
	return json.Marshal(struct {
		fields
		Runs map[string]int64 `json:"runs"`
	}{fields(w), runs})
}

// workflowRef is what triggering a workflow needs to know about it.
type workflowRef struct{ id, queueID int64 }

// registerWorkflow creates the workflow and its queue unless they exist.
func (s *Store) registerWorkflow(ctx context.Context, name string) (workflowRef, error) {
	if ref, ok := s.workflows.Load(name); ok {
		return ref.(workflowRef), nil
	}
	var ref workflowRef
	register := func() error {
		return s.inTx(ctx, func(ctx context.Context, q querier) error {
			var err error
			ref, err = s.runs.workflowByName(ctx, q, name)
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			queue, err := s.queues.insert(ctx, q, name)
			if err != nil {
				return err
			}
			ref.queueID = queue.ID
			ref.id, err = s.runs.insertWorkflow(ctx, q, name, ref.queueID)
			return err
		})
	}
	err := register()
	if errors.Is(err, errUnique) {
		// Another process registered it at the same moment, or the name
		// belongs to a plain queue: look again.
		err = register()
		if errors.Is(err, errUnique) {
			err = fmt.Errorf("%w: a queue named %q exists and is not a workflow's", ErrQueueExists, name)
		}
	}
	if err != nil {
		return ref, fmt.Errorf("register workflow %q: %w", name, err)
	}
	s.workflows.Store(name, ref)
	return ref, nil
}

// lookupWorkflow finds a registered workflow, through tx when given.
func (s *Store) lookupWorkflow(ctx context.Context, tx *sql.Tx, name string) (workflowRef, error) {
	if ref, ok := s.workflows.Load(name); ok {
		return ref.(workflowRef), nil
	}
	var ref workflowRef
	err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
		if tx != nil {
			q = tx
		}
		ref, err = s.runs.workflowByName(ctx, q, name)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return ref, fmt.Errorf("%w: %q", ErrWorkflowNotFound, name)
	}
	if err != nil {
		return ref, err
	}
	if tx == nil {
		s.workflows.Store(name, ref)
	}
	return ref, nil
}

// triggerRun enqueues a run's message and records the run, atomically.
func (s *Store) triggerRun(ctx context.Context, tx *sql.Tx, name string, input json.RawMessage, opts []EnqueueOption) (int64, error) {
	if err := s.check(); err != nil {
		return 0, err
	}
	body, err := s.encode(input)
	if err != nil {
		return 0, fmt.Errorf("trigger %q: %w", name, err)
	}
	cfg, err := enqueueOptions(opts)
	if err != nil {
		return 0, fmt.Errorf("trigger %q: %w", name, err)
	}
	out, now := cfg.outgoing()
	ref, err := s.lookupWorkflow(ctx, tx, name)
	if err != nil {
		return 0, fmt.Errorf("trigger %q: %w", name, err)
	}
	if cfg.uniqueFor != 0 {
		return 0, fmt.Errorf("trigger %q: %w: UniqueFor applies to messages; a run's Key is unique while the run exists", name, ErrInvalidArgument)
	}
	key := cfg.key
	out.key = "" // the run has the key, not its message
	var id int64
	var duplicate bool
	insert := func(ctx context.Context, q querier) error {
		duplicate = false
		if key != "" {
			existing, err := s.runs.byKey(ctx, q, ref.id, key)
			if err == nil {
				id, duplicate = existing, true
				return nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		msgID, err := s.messages.enqueue(ctx, q, ref.queueID, body, out, 0)
		if err != nil {
			return err
		}
		id, err = s.runs.insert(ctx, q, ref.id, msgID, body, cfg.timeout, key, cfg.parent)
		if key == "" || !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		// A concurrent trigger with the key committed after the look-up
		// (Postgres: the insert waited for it, and this statement's
		// successor sees it). Its run is the one; drop this message.
		if _, err := s.messages.drop(ctx, q, msgID); err != nil {
			return err
		}
		duplicate = true
		id, err = s.runs.byKey(ctx, q, ref.id, key)
		return err
	}
	if tx != nil {
		err = s.write(ctx, tx, insert)
	} else {
		err = s.inTx(ctx, insert)
	}
	if err != nil {
		return 0, fmt.Errorf("trigger %q: %w", name, err)
	}
	if duplicate {
		return id, fmt.Errorf("trigger %q: run %d has key %q: %w", name, id, key, ErrDuplicate)
	}
	if tx == nil && now {
		s.wake(queueWake(ref.queueID))
	}
	return id, nil
}

// insertRun enqueues a run's message and records the run, on q, which
// must be a transaction (a schedule's occurrence), with the run's deadline
// timeout from now (0: none), no key and no parent.
func (s *Store) insertRun(ctx context.Context, q querier, ref workflowRef, input []byte, out outgoing, timeout time.Duration) (int64, error) {
	msgID, err := s.messages.enqueue(ctx, q, ref.queueID, input, out, 0)
	if err != nil {
		return 0, err
	}
	return s.runs.insert(ctx, q, ref.id, msgID, input, timeout, "", 0)
}

// triggerRuns starts one run per input in one transaction of two
// statements: the runs' messages (one batch insert), then the runs (one
// insert of every message and input pair). It returns the run IDs in the
// order of inputs (checked JSON each).
func (s *Store) triggerRuns(ctx context.Context, tx *sql.Tx, name string, inputs []json.RawMessage, opts []EnqueueOption) ([]int64, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	if len(inputs) > s.cfg.maxBatch {
		return nil, fmt.Errorf("trigger %q: %w: %d runs, limit %d", name, ErrBatchTooLarge, len(inputs), s.cfg.maxBatch)
	}
	if len(inputs) == 0 {
		return []int64{}, nil
	}
	cfg, err := enqueueOptions(opts)
	if err != nil {
		return nil, fmt.Errorf("trigger %q: %w", name, err)
	}
	if cfg.key != "" || cfg.uniqueFor != 0 {
		return nil, fmt.Errorf("trigger %q: %w: a batch takes no Key (trigger keyed runs one at a time)", name, ErrInvalidArgument)
	}
	out, now := cfg.outgoing()
	ref, err := s.lookupWorkflow(ctx, tx, name)
	if err != nil {
		return nil, fmt.Errorf("trigger %q: %w", name, err)
	}
	texts := make([]string, len(inputs))
	for i, in := range inputs {
		texts[i] = string(in)
	}
	var ids []int64
	insert := func(ctx context.Context, q querier) error {
		msgIDs, err := s.messages.enqueueBatch(ctx, q, ref.queueID, texts, out, 0)
		if err != nil {
			return err
		}
		if len(msgIDs) != len(inputs) {
			return fmt.Errorf("inserted %d of %d messages", len(msgIDs), len(inputs))
		}
		slices.Sort(msgIDs) // in insertion order, which is input order
		ids, err = s.runs.insertMany(ctx, q, ref.id, msgIDs, inputs, cfg.timeout)
		if err == nil && len(ids) != len(inputs) {
			err = fmt.Errorf("inserted %d of %d runs", len(ids), len(inputs))
		}
		slices.Sort(ids)
		return err
	}
	if tx != nil {
		err = s.write(ctx, tx, insert)
	} else {
		err = s.inTx(ctx, insert)
	}
	if err != nil {
		return nil, fmt.Errorf("trigger %q: %w", name, err)
	}
	if tx == nil && now {
		s.wake(queueWake(ref.queueID))
	}
	return ids, nil
}

// runStatus reads a run's stored status.
func (s *Store) runStatus(ctx context.Context, id int64) (RunStatus, error) {
	info, err := s.getRun(ctx, id)
	if err != nil {
		return "", err
	}
	return info.Status, nil
}

func (s *Store) getRun(ctx context.Context, id int64) (*RunInfo, error) {
	var info *RunInfo
	err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
		info, err = s.runs.get(ctx, q, id)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("run %d: %w", id, ErrRunNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("run %d: %w", id, err)
	}
	return info, nil
}

// runSteps reads a run's recorded steps in order.
func (s *Store) runSteps(ctx context.Context, id int64) ([]StepInfo, error) {
	var steps []StepInfo
	err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
		steps, err = s.runs.steps(ctx, q, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("steps of run %d: %w", id, err)
	}
	return steps, nil
}

// Runs reads and steers workflow runs: Get, Wait, Cancel, Resume, Retry,
// List and Purge. Get one from [Store.Runs]; it is safe for concurrent use,
// registers no worker, and after [Store.Close] every method returns
// [ErrClosed].
//
// Every operation on existing runs is here, whether an application calls it
// (wait for a run, cancel it) or an operator does (retry a failed run, list,
// purge), so that one type's method set is the whole answer to "what can I do
// with a run ID". Starting a run and reading its typed output belong to its
// workflow ([Workflow.Trigger], [Workflow.Result]). Workflow definitions
// stay on [Admin] ([Admin.ListWorkflows], [Admin.DeleteWorkflow]): deleting
// one deletes the queue it owns, and Admin is where queues are listed and
// deleted.
type Runs struct {
	s *Store
}

// Runs returns the run operations of the Store.
func (s *Store) Runs() *Runs { return &Runs{s: s} }

// Get returns run id as stored now, with its steps, without waiting.
// It returns [ErrRunNotFound] for an unknown ID.
func (r *Runs) Get(ctx context.Context, id int64) (*RunInfo, error) {
	s := r.s
	info, err := s.getRun(ctx, id)
	if err != nil {
		return nil, err
	}
	if info.Steps, err = s.runSteps(ctx, id); err != nil {
		return nil, err
	}
	return info, nil
}

// Wait waits until run id has finished (SUCCESS, ERROR or CANCELLED) and
// returns it as [Runs.Get] does, or returns ctx's error. A run
// finished by a worker of this Store wakes it at once; on Postgres, so does
// one finished by any process (LISTEN/NOTIFY, when the Store has a DSN to
// listen with); otherwise it checks again at growing intervals up to a
// second.
func (r *Runs) Wait(ctx context.Context, id int64) (*RunInfo, error) {
	s := r.s
	wake, unsubscribe := s.subscribe(runWake(id))
	defer unsubscribe()
	s.startListener(s.logger())
	poll := cmpOr(s.waitPoll, 10*time.Millisecond)
	t := time.NewTimer(0)
	defer t.Stop()
	marked := s.d.listen == nil || s.listenDSN == "" // this Store would not hear an announcement
	var markDone chan error
	for {
		info, err := s.getRun(ctx, id)
		if err != nil {
			return nil, err
		}
		if info.Status.Finished() {
			if info.Steps, err = s.runSteps(ctx, id); err != nil {
				return nil, err
			}
			return info, nil
		}
		if !marked {
			// Ask for the end to be announced to other processes, in the
			// background: a worker of this Store wakes us anyway. When the
			// mark is in, look again: an end recorded before it was not
			// announced.
			marked = true
			markDone = make(chan error, 1)
			go func() {
				markDone <- s.write(ctx, nil, func(ctx context.Context, q querier) error {
					return s.runs.markWaited(ctx, q, id)
				})
			}()
		}
		t.Reset(poll)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for run %d: %w", id, ctx.Err())
		case <-wake:
		case err := <-markDone:
			markDone = nil
			if err != nil && ctx.Err() == nil {
				return nil, fmt.Errorf("wait for run %d: %w", id, err)
			}
		case <-t.C:
			poll = min(2*poll, time.Second)
			if s.waitPoll > 0 {
				poll = s.waitPoll
			}
		}
	}
}

// Cancel asks run id to stop. A run no worker is executing (queued,
// paused, sleeping or waiting for a retry) is CANCELLED at once; a running
// one becomes CANCELLING and then CANCELLED at its next step boundary: the
// step in progress finishes, no further step starts. Cancel returns the
// status it left the run in, [ErrRunFinished] for a run that already ended
// and [ErrRunNotFound] for an unknown ID. Cancelling twice is harmless.
// Cancelling a parent run cancels its unfinished children ([StartChild]),
// and theirs.
func (r *Runs) Cancel(ctx context.Context, id int64) (RunStatus, error) {
	s := r.s
	var to RunStatus
	err := s.inTx(ctx, func(ctx context.Context, q querier) error {
		status, msgID, executing, err := s.lockRun(ctx, q, id)
		if err != nil {
			return err
		}
		switch {
		case status.Finished():
			return fmt.Errorf("%w: it is %s", ErrRunFinished, status)
		case status == RunCancelling:
			to = status
			return nil
		case executing:
			to = RunCancelling
		default:
			to = RunCancelled
		}
		if err := s.runs.setStatus(ctx, q, id, to); err != nil {
			return err
		}
		if to == RunCancelled {
			// Let a worker archive the message now rather than when it was due.
			if err := s.runs.wakeMessage(ctx, q, msgID); err != nil {
				return err
			}
			// A parent waiting for this child looks again.
			if _, err := s.runs.wakeParent(ctx, q, id); err != nil && !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("cancel run %d: %w", id, err)
	}
	if to == RunCancelled {
		s.wake(runWake(id))
	}
	// Cancelling a parent cancels its children (theirs in turn).
	var children []int64
	err = s.read(ctx, func(ctx context.Context, q querier) (err error) {
		children, err = s.runs.unfinishedChildren(ctx, q, id)
		return err
	})
	if err != nil {
		return to, fmt.Errorf("cancel the children of run %d: %w", id, err)
	}
	for _, child := range children {
		if _, err := r.Cancel(ctx, child); err != nil && !errors.Is(err, ErrRunFinished) {
			return to, fmt.Errorf("cancel child of run %d: %w", id, err)
		}
	}
	return to, nil
}

// Resume continues a PAUSED run now, whatever time it was paused until.
// It returns [ErrRunState] for a run that is not paused, [ErrRunFinished]
// for one that ended and [ErrRunNotFound] for an unknown ID.
func (r *Runs) Resume(ctx context.Context, id int64) error {
	s := r.s
	err := s.inTx(ctx, func(ctx context.Context, q querier) error {
		status, msgID, _, err := s.lockRun(ctx, q, id)
		switch {
		case err != nil:
			return err
		case status.Finished():
			return fmt.Errorf("%w: it is %s", ErrRunFinished, status)
		case status != RunPaused:
			return fmt.Errorf("%w: resume needs a PAUSED run; it is %s", ErrRunState, status)
		}
		if err := s.runs.setStatus(ctx, q, id, RunRunning); err != nil {
			return err
		}
		return s.runs.wakeMessage(ctx, q, msgID)
	})
	if err != nil {
		return fmt.Errorf("resume run %d: %w", id, err)
	}
	if ref, ok := s.workflowOfRun(ctx, id); ok {
		s.wake(queueWake(ref.queueID))
	}
	return nil
}

// workflowOfRun finds the workflow of a run, for in-process wakeups.
func (s *Store) workflowOfRun(ctx context.Context, id int64) (workflowRef, bool) {
	info, err := s.getRun(ctx, id)
	if err != nil {
		return workflowRef{}, false
	}
	ref, err := s.lookupWorkflow(ctx, nil, info.Workflow)
	return ref, err == nil
}

// lockRun reads a run's status and message inside a write transaction,
// locking the row where the backend has row locks, and whether a worker
// holds its message now.
func (s *Store) lockRun(ctx context.Context, q querier, id int64) (status RunStatus, msgID int64, executing bool, err error) {
	status, msgID, err = s.runs.lock(ctx, q, id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", 0, false, ErrRunNotFound
	}
	if err != nil {
		return "", 0, false, err
	}
	executing, err = s.runs.messageHeld(ctx, q, msgID)
	if errors.Is(err, sql.ErrNoRows) { // archived: nobody holds it
		err = nil
	}
	return status, msgID, executing, err
}

// Retry runs a failed run again from its first failed step: steps that
// completed keep their results and are not run again; failed steps start
// over with fresh attempts. The run is QUEUED with a new message. It returns
// [ErrRunState] unless the run's status is ERROR, and [ErrRunNotFound] for an
// unknown ID.
func (r *Runs) Retry(ctx context.Context, id int64) error {
	s := r.s
	var queueID int64
	err := s.inTx(ctx, func(ctx context.Context, q querier) error {
		status, _, _, err := s.lockRun(ctx, q, id)
		if err != nil {
			return err
		}
		if status != RunFailed {
			return fmt.Errorf("%w: retry needs a run in ERROR; it is %s", ErrRunState, status)
		}
		info, err := s.runs.get(ctx, q, id)
		if err != nil {
			return err
		}
		ref, err := s.runs.workflowByName(ctx, q, info.Workflow)
		if err != nil {
			return err
		}
		queueID = ref.queueID
		msgID, err := s.messages.enqueue(ctx, q, ref.queueID, info.Input, outgoing{}, 0)
		if err != nil {
			return err
		}
		if err := s.runs.deleteFailedSteps(ctx, q, id); err != nil {
			return err
		}
		return s.runs.requeue(ctx, q, id, msgID)
	})
	if err != nil {
		return fmt.Errorf("retry run %d: %w", id, err)
	}
	s.wake(queueWake(queueID))
	return nil
}

// Purge deletes the workflow's runs that finished (SUCCESS, ERROR or
// CANCELLED) before the given time, with their steps, and returns how many
// it deleted; runs keep accumulating otherwise. Their messages are in the
// queue's archive, trimmed separately. It returns [ErrWorkflowNotFound] for
// an unknown name.
func (r *Runs) Purge(ctx context.Context, workflow string, finishedBefore time.Time) (int64, error) {
	s := r.s
	if finishedBefore.IsZero() {
		return 0, fmt.Errorf("%w: purge runs needs a time", ErrInvalidArgument)
	}
	ref, err := s.lookupWorkflow(ctx, nil, workflow)
	if err != nil {
		return 0, fmt.Errorf("purge runs: %w", err)
	}
	var n int64
	err = s.write(ctx, nil, func(ctx context.Context, q querier) (err error) {
		n, err = s.runs.purge(ctx, q, ref.id, finishedBefore)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("purge runs of %q: %w", workflow, err)
	}
	return n, nil
}

// RunFilter selects runs for [Runs.List]; the zero value selects all.
type RunFilter struct {
	Workflow string    // only this workflow's runs
	Status   RunStatus // only runs in this status
	Parent   int64     // only the children of this run ([StartChild]); 0: any
	// Before pages backwards: only runs with a smaller ID (0: from the
	// newest).
	Before int64
	// Limit is the page size; 0 means 100.
	Limit int
}

// List returns runs, newest first, without their steps. A workflow name
// that is not registered returns [ErrWorkflowNotFound].
func (r *Runs) List(ctx context.Context, f RunFilter) ([]RunInfo, error) {
	s := r.s
	if f.Limit < 0 || f.Before < 0 {
		return nil, fmt.Errorf("%w: negative limit or cursor", ErrInvalidArgument)
	}
	switch f.Status {
	case "", RunQueued, RunRunning, RunPaused, RunCancelling, RunCancelled, RunSucceeded, RunFailed:
	default:
		return nil, fmt.Errorf("%w: unknown run status %q", ErrInvalidArgument, f.Status)
	}
	if f.Limit > s.cfg.maxBatch {
		return nil, fmt.Errorf("list runs: %w: limit %d, at most %d", ErrBatchTooLarge, f.Limit, s.cfg.maxBatch)
	}
	if f.Workflow != "" {
		if _, err := s.lookupWorkflow(ctx, nil, f.Workflow); err != nil {
			return nil, fmt.Errorf("list runs: %w", err)
		}
	}
	limit := cmpOr(f.Limit, 100)
	before := f.Before
	if before == 0 {
		before = math.MaxInt64
	}
	var out []RunInfo
	err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
		out, err = s.runs.list(ctx, q, f.Workflow, f.Status, before, limit, f.Parent)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	if out == nil {
		out = []RunInfo{}
	}
	return out, nil
}

// ListWorkflows returns every registered workflow with its run counts, by
// name.
func (a *Admin) ListWorkflows(ctx context.Context) ([]WorkflowInfo, error) {
	s := a.s
	var out []WorkflowInfo
	err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
		out, err = s.runs.workflows(ctx, q)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list workflows: %w", err)
	}
	if out == nil {
		out = []WorkflowInfo{}
	}
	return out, nil
}

// DeleteWorkflow deletes the workflow called name with all its runs, their
// steps, and its queue with its archive. It refuses with [ErrQueueInUse],
// changing nothing, while a run has not finished or the queue has live
// messages, dead letters or live workers. It returns [ErrWorkflowNotFound]
// for an unknown name.
func (a *Admin) DeleteWorkflow(ctx context.Context, name string) error {
	s := a.s
	err := s.inTx(ctx, func(ctx context.Context, q querier) error {
		ref, err := s.runs.workflowByName(ctx, q, name)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrWorkflowNotFound
		}
		if err != nil {
			return err
		}
		unfinished, err := s.runs.unfinished(ctx, q, ref.id)
		if err != nil {
			return err
		}
		if unfinished > 0 {
			return fmt.Errorf("%w: %d unfinished runs", ErrQueueInUse, unfinished)
		}
		if err := s.runs.deleteWorkflow(ctx, q, ref.id); err != nil {
			return err
		}
		return s.dropQueue(ctx, q, ref.queueID) // in use: the whole transaction rolls back
	})
	if errors.Is(err, errForeignKey) {
		err = fmt.Errorf("%w: new runs, messages or workers arrived", ErrQueueInUse)
	}
	if err != nil {
		return fmt.Errorf("delete workflow %q: %w", name, err)
	}
	s.workflows.Delete(name)
	return nil
}
