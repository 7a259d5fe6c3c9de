package pgqrs

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// This file is how a workflow run talks with the world while it runs:
// signals sent to it ([Runs.Send], received with [Recv]) and events it
// publishes ([SetEvent], read with [Runs.GetEvent] and [Runs.AwaitEvent]).

// ErrEventNotFound is returned by [Runs.GetEvent] for an event the run has
// not set, and by [Runs.AwaitEvent] when the event was not set within its
// timeout or the run finished without setting it.
var ErrEventNotFound = errors.New("pgqrs: event not found")

// maxTopicBytes bounds signal topics and event keys.
const maxTopicBytes = 256

// validateTopic checks a signal topic or event key (what names it).
func validateTopic(what, s string) error {
	if s == "" || len(s) > maxTopicBytes || !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return fmt.Errorf("%w: %s %q must be 1 to %d bytes of UTF-8 without NUL", ErrInvalidArgument, what, s, maxTopicBytes)
	}
	return nil
}

// encodeValue is the store's payload encoding ([Store.encode]) for a signal
// or an event, where nil means JSON null.
func (s *Store) encodeValue(v any) (json.RawMessage, error) {
	if v == nil {
		return json.RawMessage("null"), nil
	}
	return s.encode(v)
}

// SignalInfo is a signal sent to a run, as stored.
type SignalInfo struct {
	ID      int64           `json:"id"` // signals of one run are received in ID order per topic
	Topic   string          `json:"topic"`
	Payload json.RawMessage `json:"payload"`
	SentAt  time.Time       `json:"sent_at"`
	// ReceivedBy is the [Recv] step that received the signal, and
	// ReceivedAt when; both zero while it waits to be received.
	ReceivedBy string    `json:"received_by,omitempty"`
	ReceivedAt time.Time `json:"received_at,omitzero"`
}

// SignalWait is a [Recv] step waiting for a signal: its run is suspended
// until a signal on Topic arrives or Until passes.
type SignalWait struct {
	Step  string    `json:"step"`
	Topic string    `json:"topic"`
	Until time.Time `json:"until"`
}

// EventInfo is an event a run set with [SetEvent]: its last value.
type EventInfo struct {
	Key       string          `json:"key"`
	Value     json.RawMessage `json:"value"`
	UpdatedAt time.Time       `json:"updated_at"`
}

// Mailbox is what a run exchanged with the world: the signals sent to it,
// the Recv steps it waits in now, and the events it set.
type Mailbox struct {
	Signals []SignalInfo `json:"signals"` // in send order
	Waiting []SignalWait `json:"waiting"` // normally at most one
	Events  []EventInfo  `json:"events"`  // by key
}

// Send sends payload to run id on topic: the run's next [Recv] of topic
// that has not received one yet returns it. Signals of one topic are
// received in the order they were sent, each exactly once; a signal nobody
// receives stays stored with its run. A run waiting in Recv for topic is
// woken at once: in every process on Postgres (NOTIFY), and in this
// Store's workers everywhere; on SQLite and Turso a worker of another
// process picks it up at its next poll.
//
// payload is any value encoding/json can marshal, JSON text as a
// json.RawMessage or []byte, or nil for JSON null; it is refused as
// [Producer.Enqueue] refuses a payload ([ErrInvalidPayload],
// [ErrPayloadTooLarge]). A topic must be 1 to 256 bytes of UTF-8
// ([ErrInvalidArgument]). Send returns [ErrRunNotFound] for an unknown run
// and [ErrRunFinished] for one that has ended: nothing would receive it.
func (r *Runs) Send(ctx context.Context, id int64, topic string, payload any) error {
	return r.send(ctx, nil, id, topic, payload)
}

// SendTx is [Runs.Send] inside tx: the signal exists, and wakes its run,
// only when tx commits. Committing or rolling back is the caller's job. On
// Postgres it locks the run's row until then (READ COMMITTED, the default
// isolation, is assumed). A worker of this Store on SQLite or Turso learns
// of the commit at its next poll, as after [Workflow.TriggerTx].
func (r *Runs) SendTx(ctx context.Context, tx *sql.Tx, id int64, topic string, payload any) error {
	if err := needTx(tx); err != nil {
		return err
	}
	return r.send(ctx, tx, id, topic, payload)
}

// send stores the signal under the run's row lock (so that a Recv
// suspending at the same moment either sees it or is woken by it, see
// Run.recvWoken) and wakes the run's message when a Recv waits on topic.
func (r *Runs) send(ctx context.Context, tx *sql.Tx, id int64, topic string, payload any) error {
	s := r.s
	if err := validateTopic("topic", topic); err != nil {
		return fmt.Errorf("send to run %d: %w", id, err)
	}
	body, err := s.encodeValue(payload)
	if err != nil {
		return fmt.Errorf("send to run %d: %w", id, err)
	}
	var queueID int64
	woke := false
	do := func(ctx context.Context, q querier) error {
		woke = false
		status, _, err := s.runs.lock(ctx, q, id)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrRunNotFound
		}
		if err != nil {
			return err
		}
		if status.Finished() {
			return fmt.Errorf("%w: it is %s", ErrRunFinished, status)
		}
		_, waiting, err := s.signals.send(ctx, q, id, topic, body)
		if err != nil || !waiting {
			return err
		}
		queueID, err = s.signals.wake(ctx, q, id)
		if errors.Is(err, sql.ErrNoRows) {
			// A worker holds the run's message: the Recv is suspending
			// now, and looks for signals once it has given the message back.
			return nil
		}
		woke = err == nil
		return err
	}
	if tx != nil {
		err = s.write(ctx, tx, do)
	} else {
		err = s.inTx(ctx, do)
	}
	if err != nil {
		return fmt.Errorf("send to run %d: %w", id, err)
	}
	if woke && tx == nil {
		s.wake(queueWake(queueID))
	}
	return nil
}

// recvRecord is the recorded result of a [Recv] step.
type recvRecord struct {
	Signal   int64           `json:"signal,omitempty"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	TimedOut bool            `json:"timed_out,omitempty"`
}

// Recv receives the next signal sent to run on topic ([Runs.Send]) as the
// step name, and returns its payload decoded into T with ok true. If no
// signal is waiting, the run suspends, holding no worker, until one is sent
// (it is woken, not polled) or timeout has passed since the run first
// reached this step; then Recv returns ok false. A timeout of 0 does not
// wait. While suspended, Recv returns an error the workflow function must
// return, as [Sleep] does.
//
// Recv is a step: its outcome is recorded, and a replay returns the same
// signal, or the same timeout, without receiving another. Each signal is
// received exactly once, by the step that recorded it, and signals of one
// topic are received in the order they were sent. A payload that does not
// decode into T returns an error (the signal stays received by the step).
// The run's [Timeout] ends a wait too, as it ends a sleep.
func Recv[T any](ctx context.Context, run *Run, name, topic string, timeout time.Duration) (T, bool, error) {
	var zero T
	if err := nonNegative("recv timeout", timeout); err != nil {
		return zero, false, err
	}
	if err := validateTopic("topic", topic); err != nil {
		return zero, false, err
	}
	call, err := run.admit(name, nil)
	if err != nil {
		return zero, false, err
	}
	out, err := run.receive(ctx, call, topic, timeout)
	if err != nil {
		return zero, false, err
	}
	var rec recvRecord
	if err := json.Unmarshal(out, &rec); err != nil {
		return zero, false, fmt.Errorf("recv %q: decode recorded result: %w", name, err)
	}
	if rec.TimedOut {
		return zero, false, nil
	}
	if len(rec.Payload) == 0 {
		rec.Payload = json.RawMessage("null")
	}
	var v T
	if err := json.Unmarshal(rec.Payload, &v); err != nil {
		return zero, false, fmt.Errorf("recv %q: decode signal %d: %w", name, rec.Signal, err)
	}
	return v, true, nil
}

// receive is Recv without types. A recorded outcome replays. Otherwise,
// after the steps ahead are durable (flush), one transaction claims the
// oldest unreceived signal of topic and records the step with it, or, when
// there is none, records the step's wait (at its first call) and reads
// when it times out: before then the run suspends, after it the timeout
// becomes the run's pending step, recorded with its next write.
func (r *Run) receive(ctx context.Context, call *stepCall, topic string, timeout time.Duration) (json.RawMessage, error) {
	if rec := call.record; rec != nil && rec.Status == StepSucceeded {
		return rec.Output, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := r.flush(ctx); err != nil {
		return nil, err
	}
	s := r.e.s
	var out json.RawMessage
	var status RunStatus
	var until time.Time
	waiting := false
	err := s.inTx(ctx, func(ctx context.Context, q querier) error {
		out, waiting = nil, false
		id, payload, err := s.signals.claim(ctx, q, r.id, topic, call.name)
		switch {
		case err == nil:
			if out, err = json.Marshal(recvRecord{Signal: id, Payload: payload}); err != nil {
				return err
			}
			// No row: the run may not take steps, or another execution
			// recorded this one; the claim rolls back with it.
			status, err = s.runs.stepDone(ctx, q, r.id, pendingStep{name: call.name, position: call.position, output: out, attempts: call.attempts})
			return err
		case !errors.Is(err, sql.ErrNoRows):
			return err
		case timeout == 0:
			return nil
		}
		var due bool
		until, due, err = s.signals.wait(ctx, q, r.id, call.name, topic, timeout)
		waiting = !due
		return err
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, r.notRecorded(ctx, call.name)
	case err != nil:
		return nil, &recordError{fmt.Errorf("recv %q of run %d: %w", call.name, r.id, err)}
	case out != nil:
		if status == RunCancelling {
			return nil, r.cancel(ctx)
		}
		return out, nil
	case waiting:
		r.mu.Lock()
		defer r.mu.Unlock()
		err := r.suspendUntil(until)
		r.suspend.after = r.recvWoken(topic)
		return nil, err
	}
	out = json.RawMessage(`{"timed_out":true}`)
	r.mu.Lock()
	r.pending = &pendingStep{name: call.name, position: call.position, output: out, attempts: call.attempts}
	r.mu.Unlock()
	return out, nil
}

// recvWoken returns what a Recv's suspension does once the run's message
// is given back: bring it forward if a signal on topic arrived meanwhile.
// A Send that found the message still held could not. It takes the run's
// row lock, so a Send still in flight commits first and is seen.
func (r *Run) recvWoken(topic string) func(ctx context.Context) {
	s, id := r.e.s, r.id
	return func(ctx context.Context) {
		var queueID int64
		err := s.inTx(ctx, func(ctx context.Context, q querier) error {
			if _, _, err := s.runs.lock(ctx, q, id); err != nil {
				return err
			}
			var err error
			queueID, err = s.signals.wakeSignalled(ctx, q, id, topic)
			return err
		})
		if err == nil {
			s.wake(queueWake(queueID))
		}
	}
}

// SetEvent sets run's event key to value: callers read it with
// [Runs.GetEvent] or wait for it with [Runs.AwaitEvent]. Use it for
// progress or an intermediate result; setting a key again replaces its
// value, and the last value set wins. SetEvent is a step named "event:"
// plus key (and "#2", "#3", … for later sets of the key in one run): its
// value is recorded with the event, durably, before SetEvent returns, and a
// replay does not set it again, so an event never goes back to an earlier
// value. value is encoded as [Runs.Send] encodes a payload; a key must be 1
// to 256 bytes of UTF-8.
func SetEvent(ctx context.Context, run *Run, key string, value any) error {
	if err := validateTopic("event key", key); err != nil {
		return err
	}
	if run == nil {
		return fmt.Errorf("%w: nil *Run", ErrInvalidArgument)
	}
	s := run.e.s
	body, err := s.encodeValue(value)
	if err != nil {
		return fmt.Errorf("event %q: %w", key, err)
	}
	call, err := run.admit(run.eventStep(key), nil)
	if err != nil {
		return err
	}
	if rec := call.record; rec != nil && rec.Status == StepSucceeded {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := run.flush(ctx); err != nil {
		return err
	}
	var status RunStatus
	err = s.inTx(ctx, func(ctx context.Context, q querier) error {
		if err := s.signals.setEvent(ctx, q, run.id, key, body); err != nil {
			return err
		}
		var err error
		status, err = s.runs.stepDone(ctx, q, run.id, pendingStep{name: call.name, position: call.position, output: body, attempts: call.attempts})
		return err // no row: the event rolls back with the step
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return run.notRecorded(ctx, call.name)
	case err != nil:
		return &recordError{fmt.Errorf("set event %q of run %d: %w", key, run.id, err)}
	}
	s.wake(eventWake(run.id))
	if status == RunCancelling {
		return run.cancel(ctx)
	}
	return nil
}

// eventStep names the step of the next SetEvent of key in this execution.
func (r *Run) eventStep(key string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	name := "event:" + key
	for n := 2; r.seen[name]; n++ {
		name = "event:" + key + "#" + strconv.Itoa(n)
	}
	return name
}

// GetEvent returns the value run id last set for event key ([SetEvent]),
// without waiting. It returns [ErrEventNotFound] when the run has not set
// it and [ErrRunNotFound] for an unknown run.
func (r *Runs) GetEvent(ctx context.Context, id int64, key string) (json.RawMessage, error) {
	v, _, err := r.event(ctx, id, key)
	return v, err
}

// event reads event key of run id; when it is unset, it also returns the
// run's status.
func (r *Runs) event(ctx context.Context, id int64, key string) (json.RawMessage, RunStatus, error) {
	s := r.s
	if err := validateTopic("event key", key); err != nil {
		return nil, "", err
	}
	var ev EventInfo
	err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
		ev, err = s.signals.getEvent(ctx, q, id, key)
		return err
	})
	if err == nil {
		return ev.Value, "", nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, "", fmt.Errorf("event %q of run %d: %w", key, id, err)
	}
	status, err := s.runStatus(ctx, id)
	if err != nil {
		return nil, "", err
	}
	return nil, status, fmt.Errorf("run %d: %w: %q", id, ErrEventNotFound, key)
}

// AwaitEvent waits until run id has set event key and returns its value:
// at once if it has. A SetEvent by a worker of this Store wakes it at once,
// and on Postgres one by any process (NOTIFY, when the Store has a DSN to
// listen with); otherwise it looks again at growing intervals up to a
// second. When timeout passes first, or the run finishes without setting
// the event, it returns an error wrapping [ErrEventNotFound]; when ctx
// ends, ctx's error. A timeout of 0 looks once.
func (r *Runs) AwaitEvent(ctx context.Context, id int64, key string, timeout time.Duration) (json.RawMessage, error) {
	s := r.s
	if err := nonNegative("await timeout", timeout); err != nil {
		return nil, err
	}
	set, unsubscribe := s.subscribe(eventWake(id))
	defer unsubscribe()
	ended, unsubscribeEnd := s.subscribe(runWake(id))
	defer unsubscribeEnd()
	s.startListener(s.logger())
	expired := time.NewTimer(timeout)
	defer expired.Stop()
	poll := cmpOr(s.waitPoll, 10*time.Millisecond)
	t := time.NewTimer(poll)
	defer t.Stop()
	for {
		v, status, err := r.event(ctx, id, key)
		switch {
		case err == nil:
			return v, nil
		case !errors.Is(err, ErrEventNotFound):
			return nil, err
		case status.Finished():
			return nil, fmt.Errorf("await %w (the run ended %s)", err, status)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("await event %q of run %d: %w", key, id, ctx.Err())
		case <-expired.C:
			// One last look: the event may have been set just now.
			if v, _, err := r.event(ctx, id, key); err == nil {
				return v, nil
			}
			return nil, fmt.Errorf("await %w (not set within %v)", err, timeout)
		case <-set:
		case <-ended:
		case <-t.C:
			poll = min(2*poll, time.Second)
			if s.waitPoll > 0 {
				poll = s.waitPoll
			}
			t.Reset(poll)
		}
	}
}

// Mailbox returns what run id exchanged with the world: every signal sent
// to it, the Recv steps it waits in now, and its events. It returns
// [ErrRunNotFound] for an unknown run.
func (r *Runs) Mailbox(ctx context.Context, id int64) (*Mailbox, error) {
	s := r.s
	if _, err := s.getRun(ctx, id); err != nil {
		return nil, err
	}
	var m Mailbox
	err := s.read(ctx, func(ctx context.Context, q querier) (err error) {
		if m.Signals, err = s.signals.list(ctx, q, id); err != nil {
			return err
		}
		if m.Waiting, err = s.signals.waits(ctx, q, id); err != nil {
			return err
		}
		m.Events, err = s.signals.events(ctx, q, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("mailbox of run %d: %w", id, err)
	}
	return &m, nil
}
