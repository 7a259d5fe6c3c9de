package pgqrs

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// messageRepo runs the statements of pgqrs_messages (see repo_queues.go for
// what a repository is): enqueue, the claim, and the fenced settle
// statements that move a held message on.
type messageRepo struct{ d *dialect }

// visibility is when an enqueued message becomes visible: at at if set,
// else after delay.
type visibility struct {
	delay time.Duration
	at    time.Time
}

func (r messageRepo) visibilityArgs(v visibility) (delay, at any) {
	if !v.at.IsZero() {
		at = r.d.timeArg(v.at)
	}
	return r.d.secondsArg(v.delay), at
}

// outgoing is what an enqueue stores besides the payload: when the message
// becomes visible, its priority, its headers (a JSON object's text, nil for
// none), and its key ("" for none) with the period it stays taken after
// the message leaves (0: only while live).
type outgoing struct {
	vis       visibility
	priority  int
	headers   []byte
	key       string
	uniqueFor time.Duration
	group     string // "" for none
}

// groupArg is the group_key column: NULL for none.
func groupArg(g string) any {
	if g == "" {
		return nil
	}
	return g
}

// pendingJob is one message of enqueueJobs: checked JSON text and options.
type pendingJob struct {
	payload []byte
	out     outgoing
}

// keyClaim is a key whose holder keyHolders looks for: a live message with
// the key, or, with uniqueFor, one enqueued within that period.
type keyClaim struct {
	key       string
	uniqueFor time.Duration
}

// headersArg is the headers column: NULL for none.
func headersArg(h []byte) any {
	if h == nil {
		return nil
	}
	return string(h)
}

// producerArg is the producer worker of a message; 0 (a workflow trigger)
// is none.
func producerArg(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// enqueue inserts one message (payload: checked JSON text) and returns its
// ID. On Postgres an immediately visible message also sends a NOTIFY.
func (r messageRepo) enqueue(ctx context.Context, q querier, queueID int64, payload []byte, o outgoing, producer int64) (int64, error) {
	delay, at := r.visibilityArgs(o.vis)
	var id int64
	err := q.QueryRowContext(ctx, r.d.message.enqueue, queueID, string(payload), delay, producerArg(producer), at,
		o.priority, headersArg(o.headers), groupArg(o.group)).Scan(&id)
	return id, err
}

// enqueueBatch inserts every payload of one JSON array of payload texts, in
// array order, in one statement, and returns the new IDs.
func (r messageRepo) enqueueBatch(ctx context.Context, q querier, queueID int64, payloads []string, o outgoing, producer int64) ([]int64, error) {
	array, err := json.Marshal(payloads)
	if err != nil {
		return nil, err
	}
	delay, at := r.visibilityArgs(o.vis)
	rows, err := q.QueryContext(ctx, r.d.message.enqueueBatch, queueID, string(array), delay, producerArg(producer), at,
		o.priority, headersArg(o.headers), groupArg(o.group))
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// jobItem is one element of the JSON array enqueueJobs sends: the payload's
// JSON text, the delay (secondsArg) or visible-at time (timeArg), the
// priority, the headers object, and the key with minus its period
// (secondsArg, absent for none).
type jobItem struct {
	Payload   string          `json:"p"`
	Delay     any             `json:"d"`
	At        any             `json:"a,omitempty"`
	Priority  int             `json:"r"`
	Headers   json.RawMessage `json:"h,omitempty"`
	Key       string          `json:"k,omitempty"`
	UniqueFor any             `json:"w,omitempty"`
	Group     string          `json:"g,omitempty"`
}

// enqueueJobs inserts jobs in one statement, in order, and returns one ID
// per job: 0 for a job not inserted because its key is taken. The keys of
// jobs must be distinct. On Postgres the statement sends a NOTIFY when a
// job is visible now.
func (r messageRepo) enqueueJobs(ctx context.Context, q querier, queueID int64, jobs []pendingJob, producer int64) ([]int64, error) {
	items := make([]jobItem, len(jobs))
	unkeyed := 0
	for i, j := range jobs {
		delay, at := r.visibilityArgs(j.out.vis)
		it := jobItem{Payload: string(j.payload), Delay: delay, At: at, Priority: j.out.priority, Headers: j.out.headers,
			Key: j.out.key, Group: j.out.group}
		if j.out.uniqueFor > 0 {
			it.UniqueFor = r.d.secondsArg(-j.out.uniqueFor)
		}
		if j.out.key == "" {
			unkeyed++
		}
		items[i] = it
	}
	array, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, r.d.message.enqueueJobs, queueID, string(array), producerArg(producer))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	byKey := map[string]int64{}
	var plain []int64
	for rows.Next() {
		var id int64
		var key sql.NullString
		if err := rows.Scan(&id, &key); err != nil {
			return nil, err
		}
		if key.Valid {
			byKey[key.String] = id
		} else {
			plain = append(plain, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(plain) != unkeyed {
		return nil, fmt.Errorf("enqueue jobs: inserted %d of %d jobs without a key", len(plain), unkeyed)
	}
	// IDs are assigned in insertion order, which is array order.
	slices.Sort(plain)
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		if j.out.key == "" {
			ids[i], plain = plain[0], plain[1:]
		} else {
			ids[i] = byKey[j.out.key]
		}
	}
	return ids, nil
}

// keyHolders returns, for each claim whose key is taken in queue queueID,
// the holder's ID: the live message with the key, or else the newest one
// enqueued within the claim's period. Keys not taken are absent.
func (r messageRepo) keyHolders(ctx context.Context, q querier, queueID int64, claims []keyClaim) (map[string]int64, error) {
	type item struct {
		Key       string `json:"k"`
		UniqueFor any    `json:"w,omitempty"`
	}
	items := make([]item, len(claims))
	for i, c := range claims {
		items[i].Key = c.key
		if c.uniqueFor > 0 {
			items[i].UniqueFor = r.d.secondsArg(-c.uniqueFor)
		}
	}
	array, err := json.Marshal(items)
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, r.d.message.keyHolders, queueID, string(array))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[string]int64, len(claims))
	for rows.Next() {
		var key string
		var id int64
		if err := rows.Scan(&key, &id); err != nil {
			return nil, err
		}
		out[key] = id
	}
	return out, rows.Err()
}

// dequeue claims up to n visible messages of queue for consumer, leasing
// them for vt, in one statement. It claims nothing when the consumer's
// worker row is not ready or polling. With floors (nil: none), each
// priority level's range starts at its floor (a zero time: none), and
// reached is, per level, the latest visible-at time a claimed message had
// before the claim (zero: none claimed there, or a backend whose claim does
// not say).
func (r messageRepo) dequeue(ctx context.Context, q querier, queue *Queue, n int, vt time.Duration, consumer int64, floors *claimFloors) (msgs []*Message, reached claimFloors, err error) {
	rows, err := q.QueryContext(ctx, r.d.message.dequeue, queue.ID, n, r.d.secondsArg(vt), consumer, r.floorsArg(floors))
	if err != nil {
		return nil, reached, err
	}
	msgs, err = scanClaimed(rows, queue, n, &reached)
	return msgs, reached, err
}

// floorsArg is dequeue's floors argument: NULL for none, else a JSON
// array of the levels' floors in timeArg's form (null for none).
func (r messageRepo) floorsArg(f *claimFloors) any {
	if f == nil {
		return nil
	}
	out := make([]any, len(f))
	for i, t := range f {
		if !t.IsZero() {
			out[i] = r.d.timeArg(t)
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil // times always marshal; a full-range claim is always right
	}
	return string(b)
}

// explainDequeue returns the database's plan of dequeue with the same
// arguments (floors included), one line per row: on Postgres the statement runs (EXPLAIN
// ANALYZE: run it in a transaction and roll back), elsewhere it is only
// planned.
func (r messageRepo) explainDequeue(ctx context.Context, q querier, queue *Queue, n int, vt time.Duration, consumer int64, floors *claimFloors) ([]string, error) {
	rows, err := q.QueryContext(ctx, r.d.message.explain+r.d.message.dequeue, queue.ID, n, r.d.secondsArg(vt), consumer, r.floorsArg(floors))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	var lines []string
	for rows.Next() {
		dest := make([]any, len(cols))
		var text sql.NullString
		for i := range dest {
			dest[i] = new(any)
		}
		dest[len(dest)-1] = &text
		if err := rows.Scan(dest...); err != nil {
			return nil, err
		}
		lines = append(lines, text.String)
	}
	return lines, rows.Err()
}

// scanClaimed reads the rows of a claim (dequeue, flowRepo.claim) into
// messages in claim order, raising reached (if not nil) to each row's
// claimed-from time at its level.
func scanClaimed(rows *sql.Rows, queue *Queue, n int, reached *claimFloors) ([]*Message, error) {
	defer rows.Close()
	msgs := make([]*Message, 0, n)
	for rows.Next() {
		m := &Message{Queue: queue.Name}
		var payload []byte
		var enq, vis dbTime
		var lastErr sql.NullString
		var headers dbHeaders
		var from dbTime
		if err := rows.Scan(&m.ID, &payload, &m.ReadCount, &enq, &vis, &lastErr, &m.Priority, &headers, &from); err != nil {
			return nil, err
		}
		m.Payload, m.EnqueuedAt, m.VisibleAt, m.LastError, m.Headers = payload, enq.t, vis.t, lastErr.String, headers.h
		if reached != nil && !from.t.IsZero() && m.Priority >= 0 && m.Priority < len(reached) && from.t.After(reached[m.Priority]) {
			reached[m.Priority] = from.t
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sortClaimed(msgs)
	return msgs, nil
}

// sortClaimed puts claimed messages in claim order.
func sortClaimed(msgs []*Message) {
	// The claim's order: most urgent first, then as claimed (visible-at,
	// then ID, which RETURNING does not keep).
	slices.SortStableFunc(msgs, func(a, b *Message) int {
		if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
			return c
		}
		if c := a.VisibleAt.Compare(b.VisibleAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
}

// drop removes message id unless a consumer holds it, and reports whether
// it did.
func (r messageRepo) drop(ctx context.Context, q querier, id int64) (bool, error) {
	n, err := execCount(ctx, q, "drop message", r.d.message.drop, id)
	return n == 1, err
}

// fence names the messages a settle statement may touch: those of ids that
// consumer holds in queue.
type fence struct {
	ids             []int64
	consumer, queue int64
}

// settleFunc is one fenced settle statement; it returns the IDs it changed.
type settleFunc func(ctx context.Context, q querier, f fence) ([]int64, error)

func (r messageRepo) settle(ctx context.Context, q querier, stmt string, f fence, extra ...any) ([]int64, error) {
	args := append([]any{r.d.idsArg(f.ids), f.consumer, f.queue}, extra...)
	rows, err := q.QueryContext(ctx, stmt, args...)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// archive moves the messages to the archive (pgqrs_archive on Postgres; on
// SQLite their rows stay, marked archived).
func (r messageRepo) archive(ctx context.Context, q querier, f fence) ([]int64, error) {
	return r.settle(ctx, q, r.d.message.archive, f)
}

// delete removes the messages without archiving them.
func (r messageRepo) delete(ctx context.Context, q querier, f fence) ([]int64, error) {
	return r.settle(ctx, q, r.d.message.delete, f)
}

// unclaim gives back messages no handler saw: visible now, read count
// restored.
func (r messageRepo) unclaim(ctx context.Context, q querier, f fence) ([]int64, error) {
	return r.settle(ctx, q, r.d.message.unclaim, f)
}

// release gives the messages back, visible after delay, read count kept.
func (r messageRepo) release(delay time.Duration) settleFunc {
	return func(ctx context.Context, q querier, f fence) ([]int64, error) {
		return r.settle(ctx, q, r.d.message.release, f, r.d.secondsArg(delay))
	}
}

// extend renews the messages' leases to d from now.
func (r messageRepo) extend(d time.Duration) settleFunc {
	return func(ctx context.Context, q querier, f fence) ([]int64, error) {
		return r.settle(ctx, q, r.d.message.extend, f, r.d.secondsArg(d))
	}
}

// fail releases the messages after delay, recording text as their error.
func (r messageRepo) fail(delay time.Duration, text string) settleFunc {
	return func(ctx context.Context, q querier, f fence) ([]int64, error) {
		return r.settle(ctx, q, r.d.message.fail, f, r.d.secondsArg(delay), text)
	}
}

// deadLetter archives the messages as dead, recording reason.
func (r messageRepo) deadLetter(reason string) settleFunc {
	return func(ctx context.Context, q querier, f fence) ([]int64, error) {
		return r.settle(ctx, q, r.d.message.deadLetter, f, reason)
	}
}

// exhaust dead-letters messages claimed past their last attempt: the claim
// that found them is no delivery (read count restored), and the reason is
// followed by their last handler error, if any.
func (r messageRepo) exhaust(reason string) settleFunc {
	return func(ctx context.Context, q querier, f fence) ([]int64, error) {
		return r.settle(ctx, q, r.d.message.exhaust, f, reason)
	}
}

// reschedule gives the messages back for delay from now, read count
// restored (a workflow run waiting for a timer).
func (r messageRepo) reschedule(delay time.Duration) settleFunc {
	return func(ctx context.Context, q querier, f fence) ([]int64, error) {
		return r.settle(ctx, q, r.d.message.reschedule, f, r.d.secondsArg(delay))
	}
}

// cancel moves the live messages of ids in queue queueID (pending,
// delayed or leased, whoever holds them) to the archive marked cancelled,
// in one statement, and returns the IDs it moved. Unfenced: an admin's
// call, not a consumer's.
func (r messageRepo) cancel(ctx context.Context, q querier, queueID int64, ids []int64) ([]int64, error) {
	rows, err := q.QueryContext(ctx, r.d.message.cancel, r.d.idsArg(ids), queueID)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// moveToDLQ dead-letters every visible message of any queue claimed
// maxAttempts times or more, and returns their IDs.
func (r messageRepo) moveToDLQ(ctx context.Context, q querier, maxAttempts int) ([]int64, error) {
	rows, err := q.QueryContext(ctx, r.d.admin.moveToDLQ, maxAttempts)
	if err != nil {
		return nil, err
	}
	return scanIDs(rows)
}

// exists reports whether message id is live in queue queueID, whoever
// holds it.
func (r messageRepo) exists(ctx context.Context, q querier, id, queueID int64) (bool, error) {
	var holder sql.NullInt64
	err := q.QueryRowContext(ctx, r.d.message.holder, id, queueID).Scan(&holder)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// holders returns, for each of ids that is a live message of queue
// queueID, the consumer worker holding it (0: none).
func (r messageRepo) holders(ctx context.Context, q querier, ids []int64, queueID int64) (map[int64]int64, error) {
	rows, err := q.QueryContext(ctx, r.d.message.holders, r.d.idsArg(ids), queueID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make(map[int64]int64, len(ids))
	for rows.Next() {
		var id int64
		var holder sql.NullInt64
		if err := rows.Scan(&id, &holder); err != nil {
			return nil, err
		}
		out[id] = holder.Int64
	}
	return out, rows.Err()
}

// countHeld counts the messages consumer holds unexpired leases on.
func (r messageRepo) countHeld(ctx context.Context, q querier, consumer int64) (n int64, err error) {
	err = q.QueryRowContext(ctx, r.d.message.countHeld, consumer).Scan(&n)
	return n, err
}

// list returns up to limit live messages of queue with IDs below before,
// newest ID first, in state (MessageState; "" for all).
func (r messageRepo) list(ctx context.Context, q querier, queue *Queue, state MessageState, before int64, limit int) ([]*LiveMessage, error) {
	rows, err := q.QueryContext(ctx, r.d.message.list, queue.ID, string(state), before, limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []*LiveMessage{}
	for rows.Next() {
		m := &LiveMessage{Queue: queue.Name}
		var payload []byte
		var headers dbHeaders
		var enq, vt, claimed dbTime
		var state string
		if err := rows.Scan(&m.ID, &payload, &headers, &m.Priority, &m.ReadCount, &enq, &vt, &claimed,
			&m.ConsumerID, &m.LastError, &state); err != nil {
			return nil, err
		}
		m.Payload, m.Headers, m.State = payload, headers.h, MessageState(state)
		m.EnqueuedAt, m.VisibleAt, m.FirstClaimedAt = enq.t, vt.t, claimed.t
		out = append(out, m)
	}
	return out, rows.Err()
}
