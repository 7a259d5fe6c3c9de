package pgqrs

import (
	"context"
	"encoding/json"
	"time"
)

// signalRepo runs the statements of a run's signals, its Recv waits and its
// events (see repo_queues.go for what a repository is): pgqrs_signals,
// pgqrs_signal_waits and pgqrs_events.
type signalRepo struct{ d *dialect }

// send stores a signal for run on topic and reports whether a Recv of the
// run waits on topic now (its wait is recorded and its step is not).
func (r signalRepo) send(ctx context.Context, q querier, run int64, topic string, payload json.RawMessage) (id int64, waiting bool, err error) {
	err = q.QueryRowContext(ctx, r.d.signal.send, run, topic, string(payload)).Scan(&id, &waiting)
	return id, waiting, err
}

// wake makes run's message visible now if it waits delayed and unleased
// (a suspended run), announcing it on Postgres, and returns the message's
// queue; sql.ErrNoRows when the message was not waiting.
func (r signalRepo) wake(ctx context.Context, q querier, run int64) (queueID int64, err error) {
	err = q.QueryRowContext(ctx, r.d.signal.wake, run).Scan(&queueID)
	return queueID, err
}

// wakeSignalled is wake, only while a signal of run on topic is unreceived.
func (r signalRepo) wakeSignalled(ctx context.Context, q querier, run int64, topic string) (queueID int64, err error) {
	err = q.QueryRowContext(ctx, r.d.signal.wakeSignalled, run, topic).Scan(&queueID)
	return queueID, err
}

// claim marks run's oldest unreceived signal on topic received by step and
// returns it; sql.ErrNoRows when there is none.
func (r signalRepo) claim(ctx context.Context, q querier, run int64, topic, step string) (id int64, payload json.RawMessage, err error) {
	var b []byte
	err = q.QueryRowContext(ctx, r.d.signal.claim, run, topic, step).Scan(&id, &b)
	return id, b, err
}

// wait records that Recv step of run waits on topic until timeout from now,
// unless it recorded its wait already, and returns the recorded time and
// whether it has passed; sql.ErrNoRows when the step has a recorded
// success (another execution of the run took it).
func (r signalRepo) wait(ctx context.Context, q querier, run int64, step, topic string, timeout time.Duration) (until time.Time, due bool, err error) {
	var t dbTime
	err = q.QueryRowContext(ctx, r.d.signal.wait, run, step, topic, r.d.secondsArg(timeout)).Scan(&t, &due)
	return t.t, due, err
}

// list returns every signal sent to run, in send order.
func (r signalRepo) list(ctx context.Context, q querier, run int64) ([]SignalInfo, error) {
	rows, err := q.QueryContext(ctx, r.d.signal.list, run)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []SignalInfo{}
	for rows.Next() {
		var sig SignalInfo
		var payload []byte
		var sent, received dbTime
		if err := rows.Scan(&sig.ID, &sig.Topic, &payload, &sent, &sig.ReceivedBy, &received); err != nil {
			return nil, err
		}
		sig.Payload, sig.SentAt, sig.ReceivedAt = payload, sent.t, received.t
		out = append(out, sig)
	}
	return out, rows.Err()
}

// waits returns run's pending Recv waits, the soonest to time out first.
func (r signalRepo) waits(ctx context.Context, q querier, run int64) ([]SignalWait, error) {
	rows, err := q.QueryContext(ctx, r.d.signal.waits, run)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []SignalWait{}
	for rows.Next() {
		var w SignalWait
		var until dbTime
		if err := rows.Scan(&w.Step, &w.Topic, &until); err != nil {
			return nil, err
		}
		w.Until = until.t
		out = append(out, w)
	}
	return out, rows.Err()
}

// setEvent sets run's event key to value (announced on Postgres).
func (r signalRepo) setEvent(ctx context.Context, q querier, run int64, key string, value json.RawMessage) error {
	_, err := q.ExecContext(ctx, r.d.signal.setEvent, run, key, string(value))
	return err
}

// getEvent returns run's event key; sql.ErrNoRows when it is unset.
func (r signalRepo) getEvent(ctx context.Context, q querier, run int64, key string) (EventInfo, error) {
	ev := EventInfo{Key: key}
	var value []byte
	var updated dbTime
	err := q.QueryRowContext(ctx, r.d.signal.getEvent, run, key).Scan(&value, &updated)
	ev.Value, ev.UpdatedAt = value, updated.t
	return ev, err
}

// events returns run's events by key.
func (r signalRepo) events(ctx context.Context, q querier, run int64) ([]EventInfo, error) {
	rows, err := q.QueryContext(ctx, r.d.signal.events, run)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []EventInfo{}
	for rows.Next() {
		var ev EventInfo
		var value []byte
		var updated dbTime
		if err := rows.Scan(&ev.Key, &value, &updated); err != nil {
			return nil, err
		}
		ev.Value, ev.UpdatedAt = value, updated.t
		out = append(out, ev)
	}
	return out, rows.Err()
}
