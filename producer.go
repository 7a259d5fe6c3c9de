package pgqrs

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Producer adds messages to one queue. It is a registered worker (see
// [Store.Producer]); it is safe for concurrent use.
//
// A producer heartbeats when it enqueues (at most once per half
// [DefaultHeartbeatInterval], inside the caller's transaction for the Tx
// forms), so a producer whose process died goes stale and
// [Admin.ReclaimStale] stops it, which lets [Admin.DeleteQueue] go ahead. A
// producer has no loop to stop and holds no messages, so being declared
// stopped from outside (by [Admin.ReclaimStale] after a long idle spell, or
// by [Admin.StopWorker]) does not end a producer that is in fact alive: its
// next heartbeat marks its row ready again, with the same ID, or registers
// it again if the row was purged (an enqueue to a deleted queue returns
// [ErrQueueNotFound]). If another live worker took its name meanwhile, it
// stays stopped and returns [ErrWorkerStopped]. Only its own Shutdown ends a
// producer for good.
type Producer struct {
	*worker
}

// Producer registers a producer worker for queue and returns it. It returns
// [ErrQueueNotFound] if the queue does not exist and [ErrWorkerNameTaken] if
// [WithWorkerName] names a live worker. Call [Producer.Shutdown] when done.
func (s *Store) Producer(ctx context.Context, queue string, opts ...WorkerOption) (*Producer, error) {
	w, err := s.register(ctx, queue, "producer", opts)
	if err != nil {
		return nil, err
	}
	return &Producer{worker: w}, nil
}

// EnqueueOption adjusts one Enqueue call.
type EnqueueOption interface {
	applyEnqueue(*enqueueConfig) error
}

type enqueueOptionFunc func(*enqueueConfig) error

func (f enqueueOptionFunc) applyEnqueue(c *enqueueConfig) error { return f(c) }

type enqueueConfig struct {
	delay     time.Duration
	at        time.Time
	priority  int
	headers   map[string]string
	key       string
	uniqueFor time.Duration
	group     string
	timeout   time.Duration // workflow triggers only
	parent    int64         // workflow triggers only: StartChild's run
}

// Priorities run from 0, the most urgent, to MaxPriority, the least. A
// message enqueued without [Priority] has DefaultPriority, the most urgent,
// so a queue that never names a priority claims in visible-at order as
// before.
const (
	DefaultPriority = 0
	MaxPriority     = 9
)

// Header limits: a message carries at most MaxHeaders headers, whose keys
// and values together hold at most MaxHeaderBytes bytes.
const (
	MaxHeaders     = 64
	MaxHeaderBytes = 8 << 10
)

// MaxKeyBytes is the longest [Key], in bytes.
const MaxKeyBytes = 512

// Delay keeps the message invisible for d after it is enqueued. d must not be
// negative. Default 0.
func Delay(d time.Duration) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		if d < 0 {
			return fmt.Errorf("%w: delay must not be negative, got %v", ErrInvalidArgument, d)
		}
		c.delay, c.at = d, time.Time{}
		return nil
	})
}

// At keeps the message invisible until t (a time in the past makes it
// visible at once). t must not be the zero time.
func At(t time.Time) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		if t.IsZero() {
			return fmt.Errorf("%w: At needs a non-zero time", ErrInvalidArgument)
		}
		c.at, c.delay = t, 0
		return nil
	})
}

// Timeout gives a workflow run a deadline d after its trigger: a run that
// has not finished by then ends CANCELLED (its error says the deadline
// passed), whether it is executing (the context of its function and steps
// ends at the deadline), sleeping or paused. Only [Workflow.Trigger] and
// [Workflow.TriggerTx] take it; an enqueue returns [ErrInvalidArgument].
// d must be positive.
func Timeout(d time.Duration) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: timeout must be positive, got %v", ErrInvalidArgument, d)
		}
		c.timeout = d
		return nil
	})
}

// Priority sets how urgent the message is: 0 ([DefaultPriority]) is the
// most urgent, [MaxPriority] (9) the least. A claim takes the most urgent
// visible messages first, then the earliest visible, then the oldest. A
// value outside 0–9 returns [ErrInvalidArgument].
func Priority(n int) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		if n < 0 || n > MaxPriority {
			return fmt.Errorf("%w: priority must be 0 (most urgent) to %d, got %d", ErrInvalidArgument, MaxPriority, n)
		}
		c.priority = n
		return nil
	})
}

// Header adds the string metadata key=value to the message (trace context,
// a correlation ID, a tenant). It is stored with the message, delivered in
// [Message.Headers] and kept in the archive and dead letters. A later Header
// with the same key replaces the value. The key must be non-empty; key and
// value must be valid UTF-8 without NUL characters; see [MaxHeaders] and
// [MaxHeaderBytes].
func Header(key, value string) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		if err := checkHeader(key, value); err != nil {
			return err
		}
		if c.headers == nil {
			c.headers = make(map[string]string)
		}
		c.headers[key] = value
		return nil
	})
}

// Headers adds every entry of h, as [Header] does for one.
func Headers(h map[string]string) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		for k, v := range h {
			if err := checkHeader(k, v); err != nil {
				return err
			}
			if c.headers == nil {
				c.headers = make(map[string]string, len(h))
			}
			c.headers[k] = v
		}
		return nil
	})
}

// Key makes the message unique in its queue by k: while a live message
// (pending, delayed or leased) of the queue has key k, enqueueing another
// with k inserts nothing and reports the live one as its duplicate
// ([ErrDuplicate] from [Producer.Enqueue], [Enqueued.Duplicate] from
// [Producer.EnqueueJobs]). Once that message is archived, dead-lettered or
// deleted, k is free again, unless [UniqueFor] says otherwise. k must be
// non-empty valid UTF-8 without NUL characters, at most [MaxKeyBytes]
// bytes. Uniqueness holds across every process and pool of the database:
// a unique index on Postgres, the insert's own check under SQLite's single
// writer.
func Key(k string) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		switch {
		case k == "":
			return fmt.Errorf("%w: a key must not be empty", ErrInvalidArgument)
		case len(k) > MaxKeyBytes:
			return fmt.Errorf("%w: key of %d bytes, limit %d", ErrInvalidArgument, len(k), MaxKeyBytes)
		case !utf8.ValidString(k):
			return fmt.Errorf("%w: key %q: not valid UTF-8", ErrInvalidArgument, k)
		case strings.ContainsRune(k, 0):
			return fmt.Errorf("%w: key %q holds a NUL character", ErrInvalidArgument, k)
		}
		c.key = k
		return nil
	})
}

// UniqueFor extends [Key] over a period: the key is also taken by any
// message of the queue with that key enqueued within the last d, archived
// and dead-lettered ones included (not deleted ones), so "once per 24 h" is
// Key(k), UniqueFor(24*time.Hour). The duplicate reported is the live
// message, or else the newest archived one. d must be positive, and
// UniqueFor needs Key in the same call; otherwise it returns
// [ErrInvalidArgument].
func UniqueFor(d time.Duration) EnqueueOption {
	return enqueueOptionFunc(func(c *enqueueConfig) error {
		if d <= 0 {
			return fmt.Errorf("%w: UniqueFor needs a positive period, got %v", ErrInvalidArgument, d)
		}
		c.uniqueFor = d
		return nil
	})
}

func checkHeader(key, value string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: a header key must not be empty", ErrInvalidArgument)
	case !utf8.ValidString(key) || !utf8.ValidString(value):
		return fmt.Errorf("%w: header %q: not valid UTF-8", ErrInvalidArgument, key)
	case strings.ContainsRune(key, 0) || strings.ContainsRune(value, 0):
		return fmt.Errorf("%w: header %q holds a NUL character", ErrInvalidArgument, key)
	}
	return nil
}

// enqueueOptions applies opts and checks what they add up to.
func enqueueOptions(opts []EnqueueOption) (enqueueConfig, error) {
	var c enqueueConfig
	for _, o := range opts {
		if o == nil {
			continue
		}
		if err := o.applyEnqueue(&c); err != nil {
			return c, err
		}
	}
	if c.uniqueFor > 0 && c.key == "" {
		return c, fmt.Errorf("%w: UniqueFor needs Key", ErrInvalidArgument)
	}
	if len(c.headers) > MaxHeaders {
		return c, fmt.Errorf("%w: %d headers, limit %d", ErrInvalidArgument, len(c.headers), MaxHeaders)
	}
	size := 0
	for k, v := range c.headers {
		size += len(k) + len(v)
	}
	if size > MaxHeaderBytes {
		return c, fmt.Errorf("%w: headers hold %d bytes, limit %d", ErrInvalidArgument, size, MaxHeaderBytes)
	}
	return c, nil
}

// outgoing is what the options make of the stored message besides its
// payload, and whether it is visible at once.
func (c enqueueConfig) outgoing() (o outgoing, now bool) {
	o = outgoing{vis: visibility{delay: c.delay, at: c.at}, priority: c.priority, key: c.key, uniqueFor: c.uniqueFor,
		group: c.group}
	if len(c.headers) > 0 {
		o.headers, _ = json.Marshal(c.headers) // a map of strings always encodes
	}
	return o, c.at.IsZero() && c.delay == 0
}

// outgoingOf applies the options of an enqueue (see enqueueOptions and
// outgoing).
func outgoingOf(opts []EnqueueOption) (o outgoing, now bool, err error) {
	c, err := enqueueOptions(opts)
	if err != nil {
		return o, false, err
	}
	if c.timeout != 0 {
		return o, false, fmt.Errorf("%w: Timeout applies to workflow triggers, not to messages", ErrInvalidArgument)
	}
	o, now = c.outgoing()
	return o, now, nil
}

// woken wakes this process's Run loops on the queue after an enqueue that
// made messages visible at once. Inside a caller's transaction it does
// nothing: the messages are invisible until the commit, which Postgres
// announces itself.
func (p *Producer) woken(tx *sql.Tx, now bool) {
	if tx == nil && now {
		p.s.wake(queueWake(p.queueID))
	}
}

// encode turns a payload into validated JSON. json.RawMessage and []byte are
// taken as JSON text; anything else is marshalled with encoding/json.
func (s *Store) encode(payload any) (json.RawMessage, error) {
	var b []byte
	switch v := payload.(type) {
	case nil:
		return nil, fmt.Errorf("%w: payload is nil", ErrInvalidPayload)
	case json.RawMessage:
		b = v
	case []byte:
		b = v
	default:
		var err error
		if b, err = json.Marshal(payload); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
		}
	}
	if len(b) > s.cfg.maxPayloadBytes {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrPayloadTooLarge, len(b), s.cfg.maxPayloadBytes)
	}
	if err := checkJSON(b); err != nil {
		return nil, err
	}
	return b, nil
}

// checkJSON is the one test of what pgqrs stores as JSON (payloads,
// workflow inputs and outputs, step results): valid JSON, valid UTF-8
// (encoding/json's Valid lets invalid bytes inside strings through; Postgres
// refuses them, SQLite would store them as they are), and no string holding
// a NUL character (\u0000, which Postgres jsonb cannot store). Every backend
// refuses the same values, so code behaves the same everywhere.
func checkJSON(b []byte) error {
	if !json.Valid(b) {
		return fmt.Errorf("%w: not valid JSON", ErrInvalidPayload)
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidPayload)
	}
	for i := 0; ; {
		j := bytes.Index(b[i:], []byte(`\u0000`))
		if j < 0 {
			return nil
		}
		j += i
		slashes := 0 // an escaped backslash before "u0000" is not a NUL
		for k := j - 1; k >= 0 && b[k] == '\\'; k-- {
			slashes++
		}
		if slashes%2 == 0 {
			return fmt.Errorf("%w: a string holds a NUL character (\\u0000), which Postgres cannot store", ErrInvalidPayload)
		}
		i = j + 1
	}
}

// Enqueue adds payload to the producer's queue and returns the new message's
// ID. payload is any value encoding/json can marshal, or JSON text as a
// json.RawMessage or []byte. With [Key], a message that holds the key
// already makes Enqueue insert nothing and return that message's ID
// together with [ErrDuplicate]. Other errors are [ErrInvalidPayload],
// [ErrPayloadTooLarge], [ErrInvalidArgument] for a bad option,
// [ErrWorkerStopped] after Shutdown and [ErrQueueNotFound] if the queue was
// deleted.
func (p *Producer) Enqueue(ctx context.Context, payload any, opts ...EnqueueOption) (int64, error) {
	return p.enqueueHooked(ctx, nil, payload, opts)
}

// EnqueueTx is like [Producer.Enqueue] but runs inside tx: the message exists
// only if tx commits. Committing or rolling back tx is the caller's job. A
// duplicate ([ErrDuplicate]) leaves tx usable: it inserted nothing and
// violated no constraint. (On Postgres under REPEATABLE READ or
// SERIALIZABLE, a key taken by a transaction that committed after tx's
// snapshot fails with a serialization error instead, as any conflicting
// write does at those levels.)
func (p *Producer) EnqueueTx(ctx context.Context, tx *sql.Tx, payload any, opts ...EnqueueOption) (int64, error) {
	if tx == nil {
		return 0, fmt.Errorf("%w: nil *sql.Tx", ErrInvalidArgument)
	}
	return p.enqueueHooked(ctx, tx, payload, opts)
}

func (p *Producer) enqueue(ctx context.Context, tx *sql.Tx, payload any, opts []EnqueueOption) (int64, error) {
	if err := p.usable(); err != nil {
		return 0, err
	}
	body, err := p.s.encode(payload)
	if err != nil {
		return 0, fmt.Errorf("enqueue to %q: %w", p.queue, err)
	}
	out, now, err := outgoingOf(opts)
	if err != nil {
		return 0, fmt.Errorf("enqueue to %q: %w", p.queue, err)
	}
	if out.key != "" {
		return p.enqueueKeyed(ctx, tx, pendingJob{payload: body, out: out}, now)
	}
	if err := p.alive(ctx, tx); err != nil {
		return 0, err
	}
	var id int64
	err = p.s.write(ctx, tx, func(ctx context.Context, q querier) (err error) {
		id, err = p.s.messages.enqueue(ctx, q, p.queueID, body, out, p.id)
		return err
	})
	if err != nil {
		return 0, p.enqueueErr(err)
	}
	p.woken(tx, now)
	return id, nil
}

// enqueueKeyed enqueues one message with a key: the holder's ID and
// ErrDuplicate when the key is taken.
func (p *Producer) enqueueKeyed(ctx context.Context, tx *sql.Tx, job pendingJob, now bool) (int64, error) {
	if err := p.alive(ctx, tx); err != nil {
		return 0, err
	}
	var res []Enqueued
	err := p.s.write(ctx, tx, func(ctx context.Context, q querier) (err error) {
		res, err = p.insertJobs(ctx, q, []pendingJob{job})
		return err
	})
	if err != nil {
		return 0, p.enqueueErr(err)
	}
	if res[0].Duplicate {
		return res[0].ID, fmt.Errorf("enqueue to %q: key %q is held by message %d: %w", p.queue, job.out.key, res[0].ID, ErrDuplicate)
	}
	p.woken(tx, now)
	return res[0].ID, nil
}

// alive heartbeats when the last heartbeat is older than half the default
// interval (inside tx, when given, so no second writer waits on the
// caller's transaction), and reports whether the producer may enqueue.
func (p *Producer) alive(ctx context.Context, tx *sql.Tx) error {
	if err := p.touch(ctx, tx); err != nil {
		return p.enqueueErr(err)
	}
	return p.usable()
}

func (p *Producer) enqueueErr(err error) error {
	if errors.Is(err, errForeignKey) {
		err = ErrQueueNotFound
	}
	return fmt.Errorf("enqueue to %q: %w", p.queue, err)
}

// EnqueueBatch adds all payloads to the queue in one statement: either all
// are added or none. It returns their IDs in the order of payloads; an empty
// batch returns no IDs and no error. More payloads than the store's batch
// limit return [ErrBatchTooLarge]; other errors are as for
// [Producer.Enqueue], and name the index of a bad payload. The options
// apply to every payload; a batch whose messages differ in priority, key,
// headers or delay is [Producer.EnqueueJobs]. [Key] with more than one
// payload returns [ErrInvalidArgument] (one key cannot be unique to several
// messages); with one payload it behaves as in [Producer.Enqueue].
func (p *Producer) EnqueueBatch(ctx context.Context, payloads []any, opts ...EnqueueOption) ([]int64, error) {
	return p.enqueueBatchHooked(ctx, nil, payloads, opts)
}

// EnqueueBatchTx is like [Producer.EnqueueBatch] but runs inside tx.
func (p *Producer) EnqueueBatchTx(ctx context.Context, tx *sql.Tx, payloads []any, opts ...EnqueueOption) ([]int64, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil *sql.Tx", ErrInvalidArgument)
	}
	return p.enqueueBatchHooked(ctx, tx, payloads, opts)
}

func (p *Producer) enqueueBatch(ctx context.Context, tx *sql.Tx, payloads []any, opts []EnqueueOption) ([]int64, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	if len(payloads) > p.s.cfg.maxBatch {
		return nil, fmt.Errorf("enqueue batch to %q: %w: %d payloads, limit %d", p.queue, ErrBatchTooLarge, len(payloads), p.s.cfg.maxBatch)
	}
	if len(payloads) == 0 {
		return []int64{}, nil
	}
	out, now, err := outgoingOf(opts)
	if err != nil {
		return nil, fmt.Errorf("enqueue batch to %q: %w", p.queue, err)
	}
	if out.key != "" {
		if len(payloads) > 1 {
			return nil, fmt.Errorf("enqueue batch to %q: %w: Key with %d payloads would give them all one key; use EnqueueJobs with a Key per job",
				p.queue, ErrInvalidArgument, len(payloads))
		}
		body, err := p.s.encode(payloads[0])
		if err != nil {
			return nil, fmt.Errorf("enqueue batch to %q: payload 0: %w", p.queue, err)
		}
		id, err := p.enqueueKeyed(ctx, tx, pendingJob{payload: body, out: out}, now)
		if err != nil && !errors.Is(err, ErrDuplicate) {
			return nil, err
		}
		return []int64{id}, err
	}
	// The batch travels as one JSON array of strings, each a payload's JSON
	// text, so every backend stores each payload as it would alone.
	texts := make([]string, len(payloads))
	for i, v := range payloads {
		body, err := p.s.encode(v)
		if err != nil {
			return nil, fmt.Errorf("enqueue batch to %q: payload %d: %w", p.queue, i, err)
		}
		texts[i] = string(body)
	}
	if err := p.alive(ctx, tx); err != nil {
		return nil, err
	}
	var ids []int64
	err = p.s.write(ctx, tx, func(ctx context.Context, q querier) (err error) {
		ids, err = p.s.messages.enqueueBatch(ctx, q, p.queueID, texts, out, p.id)
		return err
	})
	if err != nil {
		return nil, p.enqueueErr(err)
	}
	if len(ids) != len(payloads) {
		return nil, fmt.Errorf("enqueue batch to %q: inserted %d of %d messages", p.queue, len(ids), len(payloads))
	}
	// IDs are assigned in insertion order, which is payload order.
	slices.Sort(ids)
	p.woken(tx, now)
	return ids, nil
}

// Job is one message of [Producer.EnqueueJobs]: its payload (as for
// [Producer.Enqueue]) and its own options.
type Job struct {
	Payload any
	Options []EnqueueOption
}

// Enqueued is the outcome of one [Job]: the new message's ID, or, when
// Duplicate is true, the ID of the message that holds the job's [Key]
// (nothing was inserted for the job).
type Enqueued struct {
	ID        int64 `json:"id"`
	Duplicate bool  `json:"duplicate"`
}

// EnqueueJobs adds jobs to the queue, each with its own options (priority,
// key, headers, delay), with one statement for the inserts, and returns one
// result per job in the order of jobs. A job whose key is taken inserts
// nothing and is reported as a duplicate, with the holder's ID; a job whose
// key an earlier job of the same batch has is a duplicate of that job. A
// batch is all or nothing: either every job is inserted or reported as a
// duplicate, or none is inserted. An empty batch returns no results and no
// error. More jobs than the store's batch limit return [ErrBatchTooLarge];
// other errors are as for [Producer.Enqueue] and name the index of the bad
// job.
//
// Jobs with keys whose holders are not in the batch take a second
// statement, which finds the holders; a batch with keys runs in a
// transaction of its own, so that it commits once even when that lookup
// finds a key released meanwhile and the job is inserted after all.
func (p *Producer) EnqueueJobs(ctx context.Context, jobs []Job) ([]Enqueued, error) {
	return p.enqueueJobsHooked(ctx, nil, jobs)
}

// EnqueueJobsTx is like [Producer.EnqueueJobs] but runs inside tx, which
// duplicates leave usable (see [Producer.EnqueueTx]).
func (p *Producer) EnqueueJobsTx(ctx context.Context, tx *sql.Tx, jobs []Job) ([]Enqueued, error) {
	if tx == nil {
		return nil, fmt.Errorf("%w: nil *sql.Tx", ErrInvalidArgument)
	}
	return p.enqueueJobsHooked(ctx, tx, jobs)
}

func (p *Producer) enqueueJobs(ctx context.Context, tx *sql.Tx, jobs []Job) ([]Enqueued, error) {
	if err := p.usable(); err != nil {
		return nil, err
	}
	if len(jobs) > p.s.cfg.maxBatch {
		return nil, fmt.Errorf("enqueue jobs to %q: %w: %d jobs, limit %d", p.queue, ErrBatchTooLarge, len(jobs), p.s.cfg.maxBatch)
	}
	if len(jobs) == 0 {
		return []Enqueued{}, nil
	}
	pending := make([]pendingJob, len(jobs))
	keyed, anyNow := false, false
	for i, j := range jobs {
		body, err := p.s.encode(j.Payload)
		if err != nil {
			return nil, fmt.Errorf("enqueue jobs to %q: job %d: %w", p.queue, i, err)
		}
		out, now, err := outgoingOf(j.Options)
		if err != nil {
			return nil, fmt.Errorf("enqueue jobs to %q: job %d: %w", p.queue, i, err)
		}
		pending[i] = pendingJob{payload: body, out: out}
		keyed = keyed || out.key != ""
		anyNow = anyNow || now
	}
	if err := p.alive(ctx, tx); err != nil {
		return nil, err
	}
	var res []Enqueued
	run := func(ctx context.Context, q querier) (err error) {
		res, err = p.insertJobs(ctx, q, pending)
		return err
	}
	var err error
	if keyed && tx == nil {
		err = p.s.inTx(ctx, run)
	} else {
		err = p.s.write(ctx, tx, run)
	}
	if err != nil {
		return nil, p.enqueueErr(err)
	}
	p.woken(tx, anyNow)
	return res, nil
}

// keyAttempts bounds how often insertJobs tries a job whose key was taken
// but whose holder it could not find. That happens only in a race with
// other writers, on Postgres: the insert's ON CONFLICT DO NOTHING sees a
// conflicting row committed after the statement's snapshot, which nothing
// else in the statement can read, and the holder may be archived (its key
// freed) before the lookup that follows; on SQLite and Turso another
// process may archive it between the two statements. Each new attempt sees
// what those writers committed, so it inserts the job or finds the new
// holder unless the key changed hands again in between.
const keyAttempts = 5

// insertJobs inserts jobs on q, the jobs without a key and the first job of
// each key in one statement, and returns one result per job: the inserted
// ID, or the holder of a taken key. A job whose key an earlier job in
// jobs has is a duplicate of that job.
func (p *Producer) insertJobs(ctx context.Context, q querier, jobs []pendingJob) ([]Enqueued, error) {
	res := make([]Enqueued, len(jobs))
	firstOf := map[string]int{}
	dupOf := map[int]int{}
	send := make([]int, 0, len(jobs))
	for i, j := range jobs {
		if k := j.out.key; k != "" {
			if f, ok := firstOf[k]; ok {
				dupOf[i] = f
				continue
			}
			firstOf[k] = i
		}
		send = append(send, i)
	}
	for attempt := 1; len(send) > 0; attempt++ {
		if attempt > keyAttempts {
			return nil, fmt.Errorf("key %q: taken and freed again by other writers %d times in a row; try again", jobs[send[0]].out.key, keyAttempts)
		}
		batch := make([]pendingJob, len(send))
		for n, i := range send {
			batch[n] = jobs[i]
		}
		ids, err := p.s.messages.enqueueJobs(ctx, q, p.queueID, batch, p.id)
		if err != nil {
			return nil, err
		}
		var taken []int
		var claims []keyClaim
		for n, i := range send {
			if ids[n] != 0 {
				res[i] = Enqueued{ID: ids[n]}
				continue
			}
			taken = append(taken, i)
			claims = append(claims, keyClaim{key: jobs[i].out.key, uniqueFor: jobs[i].out.uniqueFor})
		}
		if len(taken) == 0 {
			break
		}
		holders, err := p.s.messages.keyHolders(ctx, q, p.queueID, claims)
		if err != nil {
			return nil, err
		}
		send = send[:0]
		for _, i := range taken {
			if id, ok := holders[jobs[i].out.key]; ok {
				res[i] = Enqueued{ID: id, Duplicate: true}
			} else {
				send = append(send, i)
			}
		}
	}
	for i, f := range dupOf {
		res[i] = Enqueued{ID: res[f].ID, Duplicate: true}
	}
	return res, nil
}

// Shutdown marks the producer's worker stopped. Later calls on the producer
// return [ErrWorkerStopped]; its name may be reused. Shutting down a stopped
// producer does nothing and returns nil.
func (p *Producer) Shutdown(ctx context.Context) error {
	p.shut.Store(true)
	return alreadyStopped(p.transition(ctx, nil, WorkerStopped, WorkerReady, WorkerPolling, WorkerSuspended, WorkerInterrupted))
}
