package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"strings"
	"time"
)

// Schedule defines a periodic schedule: a name, when it fires (Cron, in
// TimeZone) and what each occurrence does: enqueue Payload to Queue, or
// start a run of Workflow with Payload as its input. Exactly one of Queue
// and Workflow is set.
type Schedule struct {
	// Name identifies the schedule: 1 to 128 letters, digits or "_-.:@/".
	Name string
	// Cron is when the schedule fires: five fields (minute hour
	// day-of-month month day-of-week) with lists, ranges, steps and names,
	// a descriptor (@yearly, @annually, @monthly, @weekly, @daily,
	// @midnight, @hourly), or @every and a duration of whole seconds, at
	// least [MinScheduleInterval]. docs/schedules.md has the syntax.
	Cron string
	// TimeZone is the IANA name of the zone the cron fields are read in,
	// such as "Europe/Berlin". Default "UTC". @every ignores it.
	TimeZone string
	// Queue is the queue each occurrence enqueues to; it must exist.
	Queue string
	// Workflow is the workflow each occurrence starts a run of; it must be
	// registered ([Workflow.Register]).
	Workflow string
	// Payload is the message payload, or the run's input: any value
	// encoding/json can marshal, or JSON text as a json.RawMessage or
	// []byte. nil is JSON null.
	Payload any
	// Priority is each message's priority ([Priority]). Default 0.
	Priority int
	// Headers go with each message, besides the ones the scheduler adds
	// ([HeaderSchedule], [HeaderScheduledAt], [HeaderScheduleMissed]);
	// keys starting "pgqrs-" are reserved.
	Headers map[string]string
}

// ScheduleInfo is a schedule as stored.
type ScheduleInfo struct {
	Name     string `json:"name"`
	Cron     string `json:"cron"`
	TimeZone string `json:"timezone"`
	Queue    string `json:"queue,omitempty"`    // a queue target
	Workflow string `json:"workflow,omitempty"` // a workflow target
	// Payload is the message payload, or the run's input.
	Payload  json.RawMessage   `json:"payload"`
	Priority int               `json:"priority"`
	Headers  map[string]string `json:"headers,omitempty"`
	// Paused schedules do not fire until resumed ([Schedules.Resume]).
	Paused bool `json:"paused"`
	// NextRunAt is the occurrence due next. While it lies in the past the
	// schedule is overdue: the next scheduler to look fires it.
	NextRunAt time.Time `json:"next_run_at"`
	// LastRunAt is the occurrence that fired last (a scheduled one, or the
	// time of a [Schedules.Trigger]); zero before the first.
	LastRunAt time.Time `json:"last_run_at,omitzero"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// The headers each message of a schedule carries.
const (
	// HeaderSchedule is the name of the schedule.
	HeaderSchedule = "pgqrs-schedule"
	// HeaderScheduledAt is the occurrence, in RFC 3339 in UTC
	// ("2026-01-02T03:04:00Z"): the time it was due, not the time it was
	// enqueued; for [Schedules.Trigger], the time of the call.
	HeaderScheduledAt = "pgqrs-scheduled-at"
	// HeaderScheduleMissed is set when the message stands for occurrences
	// that were missed (no scheduler ran when they were due): how many
	// came before the one in HeaderScheduledAt, in decimal.
	HeaderScheduleMissed = "pgqrs-schedule-missed"
)

// SchedulerPollInterval is the longest a scheduler waits before it looks
// at the schedules again. It sleeps until the next occurrence it knows of,
// and wakes at once for a schedule added or resumed through the same Store;
// a schedule added or changed by another process is seen within this
// interval.
const SchedulerPollInterval = time.Second

// ScheduleError reports a schedule definition that [Schedules.Add] cannot
// use. Field names what is wrong: "cron", "timezone", "target", "payload",
// "priority" or "headers".
type ScheduleError struct {
	Schedule string // the schedule's name
	Field    string
	Err      error // what is wrong with the field
}

func (e *ScheduleError) Error() string {
	return fmt.Sprintf("pgqrs: invalid schedule %q: %s: %v", e.Schedule, e.Field, e.Err)
}

// Unwrap returns [ErrInvalidSchedule] and the field's error (which may be
// [ErrInvalidPayload], [ErrPayloadTooLarge] or [ErrInvalidArgument]).
func (e *ScheduleError) Unwrap() []error { return []error{ErrInvalidSchedule, e.Err} }

// Schedules manages the Store's periodic schedules: Add, Get, List, Pause,
// Resume, Delete and Trigger. Get one from [Store.Schedules]; it is safe
// for concurrent use, and after [Store.Close] every method returns
// [ErrClosed]. Schedules fire only where a scheduler runs:
// [Store.RunScheduler], or a Run loop with [RunOptions].Scheduler set.
//
// Deleting a schedule's queue or workflow deletes the schedule.
type Schedules struct{ s *Store }

// Schedules returns the Store's schedules.
func (s *Store) Schedules() *Schedules { return &Schedules{s: s} }

// schedulesWake wakes the Store's schedulers.
var schedulesWake = topic{kind: scheduleTopic}

// Add creates the schedule, or replaces the definition of the schedule of
// that name, and returns it as stored. Replacing keeps the schedule's
// paused state and last run, and its next run time unless Cron or TimeZone
// changed, so a service can Add its schedules at every start without
// skipping or repeating an occurrence. A new or retimed schedule first
// fires at its first occurrence after now.
//
// A definition it cannot use returns a [*ScheduleError] (wrapping
// [ErrInvalidSchedule]); a bad name [ErrInvalidName]; an unknown queue
// [ErrQueueNotFound]; an unregistered workflow [ErrWorkflowNotFound].
func (sc *Schedules) Add(ctx context.Context, def Schedule) (*ScheduleInfo, error) {
	s := sc.s
	if err := s.check(); err != nil {
		return nil, err
	}
	d, err := s.scheduleDef(def)
	if err != nil {
		return nil, err
	}
	var info *ScheduleInfo
	for attempt := 0; ; attempt++ {
		if err := s.scheduleTargetIDs(ctx, def, &d); err != nil {
			return nil, fmt.Errorf("add schedule %q: %w", def.Name, err)
		}
		err = s.write(ctx, nil, func(ctx context.Context, q querier) (err error) {
			info, err = s.schedules.put(ctx, q, d)
			return err
		})
		if !errors.Is(err, errForeignKey) {
			break
		}
		// The target was deleted meanwhile, or this Store cached a workflow
		// deleted since (Admin.DeleteWorkflow): look it up afresh, once.
		s.workflows.Delete(def.Workflow)
		if attempt == 1 {
			err = ErrQueueNotFound
			if def.Workflow != "" {
				err = ErrWorkflowNotFound
			}
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("add schedule %q: %w", def.Name, err)
	}
	s.wake(schedulesWake)
	return info, nil
}

// scheduleDef checks def and turns it into what the store keeps, the
// target's IDs still to be found.
func (s *Store) scheduleDef(def Schedule) (scheduleDef, error) {
	if err := validateName("schedule", def.Name); err != nil {
		return scheduleDef{}, err
	}
	bad := func(field string, err error) (scheduleDef, error) {
		return scheduleDef{}, &ScheduleError{Schedule: def.Name, Field: field, Err: err}
	}
	switch {
	case def.Queue == "" && def.Workflow == "":
		return bad("target", errors.New("set Queue or Workflow"))
	case def.Queue != "" && def.Workflow != "":
		return bad("target", errors.New("set Queue or Workflow, not both"))
	}
	zone := cmpOr(def.TimeZone, "UTC")
	spec, err := parseSchedule(def.Cron, zone)
	if err != nil {
		var ze zoneError
		if errors.As(err, &ze) {
			return bad("timezone", err)
		}
		return bad("cron", err)
	}
	payload := []byte("null")
	if def.Payload != nil {
		if payload, err = s.encode(def.Payload); err != nil {
			return bad("payload", err)
		}
	}
	if def.Priority < 0 || def.Priority > MaxPriority {
		return bad("priority", fmt.Errorf("%w: %d is not 0 (most urgent) to %d", ErrInvalidArgument, def.Priority, MaxPriority))
	}
	var headers []byte
	if len(def.Headers) > 0 {
		for k := range def.Headers {
			if strings.HasPrefix(k, "pgqrs-") {
				return bad("headers", fmt.Errorf("%w: %q: keys starting pgqrs- are reserved", ErrInvalidArgument, k))
			}
		}
		if _, err := enqueueOptions([]EnqueueOption{Headers(def.Headers)}); err != nil {
			return bad("headers", err)
		}
		headers, _ = json.Marshal(def.Headers) // strings always encode
	}
	next, ok := spec.next(time.Now())
	if !ok {
		return bad("cron", errors.New("no occurrence within ten years"))
	}
	return scheduleDef{name: def.Name, cron: strings.TrimSpace(def.Cron), timezone: zone,
		payload: payload, headers: headers, priority: def.Priority, next: next}, nil
}

// scheduleTargetIDs finds the IDs of def's queue or workflow.
func (s *Store) scheduleTargetIDs(ctx context.Context, def Schedule, d *scheduleDef) error {
	if def.Workflow != "" {
		ref, err := s.lookupWorkflow(ctx, nil, def.Workflow)
		if err != nil {
			return err
		}
		d.queueID, d.workflowID = ref.queueID, ref.id
		return nil
	}
	var owner string
	err := s.read(ctx, func(ctx context.Context, q querier) error {
		queue, err := s.queues.byName(ctx, q, def.Queue)
		if err != nil {
			return err
		}
		d.queueID = queue.ID
		owner, err = s.runs.workflowByQueue(ctx, q, queue.ID)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %q", ErrQueueNotFound, def.Queue)
	case err != nil:
		return err
	case owner != "":
		return &ScheduleError{Schedule: def.Name, Field: "target",
			Err: fmt.Errorf("queue %q is workflow %q's: set Workflow to start its runs", def.Queue, owner)}
	}
	return nil
}

// zoneError is a time zone parseSchedule cannot load.
type zoneError struct{ error }

// parseSchedule reads a stored or given cron expression in its zone.
func parseSchedule(cron, zone string) (*cronSpec, error) {
	loc, err := loadZone(zone)
	if err != nil {
		return nil, zoneError{err}
	}
	return parseCron(cron, loc)
}

// Get returns the schedule name, or [ErrScheduleNotFound].
func (sc *Schedules) Get(ctx context.Context, name string) (*ScheduleInfo, error) {
	var info *ScheduleInfo
	err := sc.s.read(ctx, func(ctx context.Context, q querier) (err error) {
		info, err = sc.s.schedules.get(ctx, q, name)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("schedule %q: %w", name, ErrScheduleNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("schedule %q: %w", name, err)
	}
	return info, nil
}

// List returns every schedule, ordered by name (an empty slice for none).
func (sc *Schedules) List(ctx context.Context) ([]ScheduleInfo, error) {
	var list []ScheduleInfo
	err := sc.s.read(ctx, func(ctx context.Context, q querier) (err error) {
		list, err = sc.s.schedules.list(ctx, q)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	return list, nil
}

// Pause stops the schedule from firing until [Schedules.Resume]; pausing
// a paused schedule does nothing. It returns [ErrScheduleNotFound] for an
// unknown name. [Schedules.Trigger] still runs a paused schedule.
func (sc *Schedules) Pause(ctx context.Context, name string) error {
	return sc.change(ctx, "pause", name, sc.s.schedules.pause)
}

// Delete removes the schedule; messages and runs it already made stay. It
// returns [ErrScheduleNotFound] for an unknown name.
func (sc *Schedules) Delete(ctx context.Context, name string) error {
	return sc.change(ctx, "delete", name, sc.s.schedules.delete)
}

func (sc *Schedules) change(ctx context.Context, verb, name string, f func(context.Context, querier, string) (bool, error)) error {
	var ok bool
	err := sc.s.write(ctx, nil, func(ctx context.Context, q querier) (err error) {
		ok, err = f(ctx, q, name)
		return err
	})
	if err == nil && !ok {
		err = ErrScheduleNotFound
	}
	if err != nil {
		return fmt.Errorf("%s schedule %q: %w", verb, name, err)
	}
	return nil
}

// Resume lets a paused schedule fire again, from its first occurrence
// after now: occurrences that passed while it was paused do not fire.
// Resuming a schedule that is not paused does nothing. It returns
// [ErrScheduleNotFound] for an unknown name.
func (sc *Schedules) Resume(ctx context.Context, name string) error {
	s := sc.s
	// The next run comes from the cron expression read first; the update
	// applies only while the expression is still that one, else it is
	// read again.
	for range 3 {
		info, err := sc.Get(ctx, name)
		if err != nil {
			return err
		}
		spec, err := parseSchedule(info.Cron, info.TimeZone)
		if err != nil {
			return fmt.Errorf("resume schedule %q: %w", name, err)
		}
		next, _ := spec.next(time.Now())
		var ok bool
		err = s.write(ctx, nil, func(ctx context.Context, q querier) (err error) {
			ok, err = s.schedules.resume(ctx, q, name, info.Cron, info.TimeZone, next)
			return err
		})
		if err != nil {
			return fmt.Errorf("resume schedule %q: %w", name, err)
		}
		if ok {
			s.wake(schedulesWake)
			return nil
		}
	}
	return fmt.Errorf("resume schedule %q: it was redefined three times meanwhile", name)
}

// Trigger runs the schedule now: it enqueues one message (or starts one
// run) as an occurrence would, exactly once per call, and returns the
// message's ID, or the run's for a workflow target. Its [HeaderScheduledAt]
// is the time of the call. It runs paused schedules too, does not change
// when the schedule fires next, and records the time as the last run. It
// returns [ErrScheduleNotFound] for an unknown name.
func (sc *Schedules) Trigger(ctx context.Context, name string) (int64, error) {
	s := sc.s
	at := time.Now().Truncate(time.Second)
	var id int64
	var target scheduleTarget
	err := s.inTx(ctx, func(ctx context.Context, q querier) (err error) {
		if target, err = s.schedules.ran(ctx, q, name, at); err != nil {
			return err
		}
		id, err = s.enqueueOccurrence(ctx, q, name, target, at, 0)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrScheduleNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("trigger schedule %q: %w", name, err)
	}
	s.wake(queueWake(target.queueID))
	return id, nil
}

// enqueueOccurrence enqueues the occurrence at of schedule name, standing
// for missed earlier ones, on q (a transaction): a message, or a run and
// its message. It returns the message's ID, or the run's.
func (s *Store) enqueueOccurrence(ctx context.Context, q querier, name string, t scheduleTarget, at time.Time, missed int64) (int64, error) {
	h := make(map[string]string, len(t.headers)+3)
	maps.Copy(h, t.headers)
	h[HeaderSchedule] = name
	h[HeaderScheduledAt] = at.UTC().Format(time.RFC3339)
	if missed > 0 {
		h[HeaderScheduleMissed] = strconv.FormatInt(missed, 10)
	}
	headers, _ := json.Marshal(h) // strings always encode
	out := outgoing{priority: t.priority, headers: headers}
	if t.workflowID != 0 {
		return s.insertRun(ctx, q, workflowRef{id: t.workflowID, queueID: t.queueID}, t.payload, out, 0)
	}
	return s.messages.enqueue(ctx, q, t.queueID, t.payload, out, 0)
}

// RunScheduler fires the Store's schedules until ctx is done, then returns
// nil ([ErrClosed] if the Store is closed). Any number of schedulers may
// run, in any number of processes: each occurrence is enqueued by exactly
// one of them. A scheduler sleeps until the next occurrence, at most
// [SchedulerPollInterval]. Occurrences missed while no scheduler ran
// collapse into one message, fired as soon as a scheduler runs (see
// [HeaderScheduleMissed]). Errors are logged to the Store's logger ([WithLogger]) and retried
// at the next poll. A Run loop with [RunOptions].Scheduler set runs one
// too, so a service needs no extra process.
func (s *Store) RunScheduler(ctx context.Context) error {
	if err := s.check(); err != nil {
		return err
	}
	return s.runScheduler(ctx, s.logger())
}

// dueBatch is how many due schedules one look reads.
const dueBatch = 100

func (s *Store) runScheduler(ctx context.Context, log *slog.Logger) error {
	wake, unsubscribe := s.subscribe(schedulesWake)
	defer unsubscribe()
	for {
		wait, err := s.fireDue(ctx, log, time.Now())
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, ErrClosed):
			return err
		case err != nil:
			log.Error("pgqrs: scheduler: reading the due schedules failed", "err", err)
			wait = SchedulerPollInterval
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// fireDue fires every schedule due at now and returns how long to wait
// until the next look.
func (s *Store) fireDue(ctx context.Context, log *slog.Logger, now time.Time) (time.Duration, error) {
	var due []dueSchedule
	err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
		due, err = s.schedules.due(ctx, q, now.Add(SchedulerPollInterval), dueBatch)
		return err
	})
	if err != nil {
		return 0, err
	}
	wait, fired := SchedulerPollInterval, 0
	for _, d := range due {
		if d.next.After(now) {
			return d.next.Sub(now), nil
		}
		if err := s.fire(ctx, d, now); err != nil {
			if ctx.Err() != nil || errors.Is(err, ErrClosed) {
				return 0, err
			}
			log.Error("pgqrs: scheduler: firing failed", "schedule", d.name, "err", err)
			continue
		}
		fired++
	}
	if len(due) == dueBatch && fired > 0 {
		wait = 0 // there may be more
	}
	return wait, nil
}

// fire claims and enqueues the due occurrence of d (with any missed after
// it) in one transaction. Another scheduler may have claimed it first; then
// fire does nothing.
func (s *Store) fire(ctx context.Context, d dueSchedule, now time.Time) error {
	spec, err := parseSchedule(d.cron, d.timezone)
	if err != nil {
		return err
	}
	latest, missed, next, ok := spec.catchUp(d.next, now)
	if !ok {
		return fmt.Errorf("%q has no occurrence after %v", d.cron, now)
	}
	var target scheduleTarget
	var claimed bool
	err = s.inTx(ctx, func(ctx context.Context, q querier) (err error) {
		if target, claimed, err = s.schedules.claim(ctx, q, d, next, latest); err != nil || !claimed {
			return err
		}
		_, err = s.enqueueOccurrence(ctx, q, d.name, target, latest, missed)
		return err
	})
	if err == nil && claimed {
		s.wake(queueWake(target.queueID))
	}
	return err
}
