package pgqrs

import (
	"context"
	"strings"
	"time"
)

// workerRepo runs the statements of pgqrs_workers (see repo_queues.go for
// what a repository is), including the reclaim statements that release a
// stopped worker's messages.
type workerRepo struct{ d *dialect }

func scanWorker(sc interface{ Scan(...any) error }) (WorkerInfo, error) {
	var wi WorkerInfo
	var status string
	var started, beat, stopped dbTime
	err := sc.Scan(&wi.ID, &wi.Name, &wi.Queue, &wi.Role, &status, &started, &beat, &stopped)
	wi.Status, wi.StartedAt, wi.HeartbeatAt, wi.StoppedAt = WorkerStatus(status), started.t, beat.t, stopped.t
	return wi, err
}

// register inserts a ready worker and returns its ID. A live worker of the
// same name is a unique violation; an unknown queue a foreign-key one.
func (r workerRepo) register(ctx context.Context, q querier, name string, queueID int64, role string) (int64, error) {
	var id int64
	var started dbTime
	err := q.QueryRowContext(ctx, r.d.worker.register, name, queueID, role).Scan(&id, &started)
	return id, err
}

// heartbeat records a beat and returns the worker's status; sql.ErrNoRows
// for a purged worker.
func (r workerRepo) heartbeat(ctx context.Context, q querier, id int64) (WorkerStatus, error) {
	return scanStatus(q.QueryRowContext(ctx, r.d.worker.heartbeat, id))
}

// producerBeat is a producer's heartbeat: a row stopped from outside is
// made ready again unless its name was taken meanwhile (then sql.ErrNoRows,
// as for a purged row).
func (r workerRepo) producerBeat(ctx context.Context, q querier, id int64) (WorkerStatus, error) {
	return scanStatus(q.QueryRowContext(ctx, r.d.worker.producerBeat, id))
}

// rejoin registers a purged producer again under its ID; sql.ErrNoRows
// when it cannot.
func (r workerRepo) rejoin(ctx context.Context, q querier, id int64, name string, queueID int64, role string) (WorkerStatus, error) {
	return scanStatus(q.QueryRowContext(ctx, r.d.worker.rejoin, id, name, queueID, role))
}

// status returns worker id's status, or sql.ErrNoRows.
func (r workerRepo) status(ctx context.Context, q querier, id int64) (WorkerStatus, error) {
	return scanStatus(q.QueryRowContext(ctx, r.d.worker.status, id))
}

func scanStatus(row interface{ Scan(...any) error }) (WorkerStatus, error) {
	var st string
	err := row.Scan(&st)
	return WorkerStatus(st), err
}

// transition moves worker id to state to if it is in one of from, as one
// guarded UPDATE, and reports whether it did.
func (r workerRepo) transition(ctx context.Context, q querier, id int64, to WorkerStatus, from []WorkerStatus) (bool, error) {
	froms := make([]string, len(from))
	for i, f := range from {
		froms[i] = string(f)
	}
	n, err := execCount(ctx, q, "worker transition", r.d.worker.transition, id, string(to), strings.Join(froms, ","))
	return n > 0, err
}

// get returns worker id, or sql.ErrNoRows.
func (r workerRepo) get(ctx context.Context, q querier, id int64) (WorkerInfo, error) {
	return scanWorker(q.QueryRowContext(ctx, r.d.worker.get, id))
}

// list returns the workers of queue queueID (0: all), by ID.
func (r workerRepo) list(ctx context.Context, q querier, queueID int64) ([]WorkerInfo, error) {
	rows, err := q.QueryContext(ctx, r.d.worker.list, queueID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []WorkerInfo{}
	for rows.Next() {
		w, err := scanWorker(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// health counts the workers of queue queueID (0: all) per state, and the
// stale ones: not stopped, no heartbeat within staleAfter.
func (r workerRepo) health(ctx context.Context, q querier, queueID int64, staleAfter time.Duration) (WorkerHealth, error) {
	var h WorkerHealth
	err := q.QueryRowContext(ctx, r.d.admin.workerHealth, queueID, r.d.secondsArg(-staleAfter)).Scan(
		&h.Ready, &h.Polling, &h.Suspended, &h.Interrupted, &h.Stopped, &h.Stale)
	return h, err
}

// stopStale marks every stale producer and consumer stopped and returns
// their IDs.
func (r workerRepo) stopStale(ctx context.Context, q querier, staleAfter time.Duration) ([]int64, error) {
	rows, err := q.QueryContext(ctx, r.d.admin.stopStaleWorkers, r.d.secondsArg(-staleAfter))
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// anyStaleConsumer reports whether queue queueID has a consumer other than
// self without a heartbeat within staleAfter.
func (r workerRepo) anyStaleConsumer(ctx context.Context, q querier, queueID, self int64, staleAfter time.Duration) (bool, error) {
	var stale bool
	err := q.QueryRowContext(ctx, r.d.admin.staleConsumers, queueID, r.d.secondsArg(-staleAfter), self).Scan(&stale)
	return stale, err
}

// stopStaleConsumers marks those consumers stopped, as one guarded UPDATE,
// and returns their IDs.
func (r workerRepo) stopStaleConsumers(ctx context.Context, q querier, queueID, self int64, staleAfter time.Duration) ([]int64, error) {
	rows, err := q.QueryContext(ctx, r.d.admin.stopStaleConsumers, queueID, r.d.secondsArg(-staleAfter), self)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// release makes every message the workers hold visible at once (read
// counts kept) and returns how many.
func (r workerRepo) release(ctx context.Context, q querier, workerIDs []int64) (int64, error) {
	return execCount(ctx, q, "release messages of stopped workers", r.d.admin.releaseWorkers, r.d.idsArg(workerIDs))
}

// releaseHeld makes every message worker id holds visible at once.
func (r workerRepo) releaseHeld(ctx context.Context, q querier, id int64) (int64, error) {
	return execCount(ctx, q, "release held messages", r.d.message.releaseHeld, id)
}

// purge deletes workers stopped more than olderThan ago that no live
// message references, and returns how many.
func (r workerRepo) purge(ctx context.Context, q querier, olderThan time.Duration) (int64, error) {
	return execCount(ctx, q, "purge workers", r.d.admin.purgeWorkers, r.d.secondsArg(-olderThan))
}
