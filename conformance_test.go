package pgqrs

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// The repository conformance suite: one case per repository method
// (repo_*.go), run on every backend. A case sets up the least state it
// needs through other repository methods and checks the method's contract:
// what it returns, which rows it changes (fenced settles change only rows
// their consumer holds), what it does when nothing matches, ordering, and
// how times round-trip. TestRepositoryConformanceIsComplete fails when a
// repository method has no case, so the suite grows with the repositories.

// repoCase is the conformance check of one repository method.
type repoCase struct {
	// fresh runs the case on a database of its own: it reads or changes
	// rows across all queues (lists, counts, reclaims), which the other
	// cases' rows would disturb.
	fresh bool
	run   func(e *repoEnv)
}

// repoEnv is what a case runs with: a Store whose repositories it calls on
// the pool directly (cases run one at a time per Store, so no write
// serialisation is needed), and a prefix that keeps its names apart from
// the other cases' on a shared database.
type repoEnv struct {
	t      *testing.T
	ctx    context.Context
	s      *Store
	q      querier
	prefix string
}

// TestRepositoryConformance runs every repoCase on every backend.
func TestRepositoryConformance(t *testing.T) {
	t.Parallel()
	names := make([]string, 0, len(repoCases))
	for name := range repoCases {
		names = append(names, name)
	}
	// Shared cases first: a fresh case on Turso wipes the one database the
	// subtest's sqld server holds.
	slices.SortFunc(names, func(a, b string) int {
		if fa, fb := repoCases[a].fresh, repoCases[b].fresh; fa != fb {
			if fa {
				return 1
			}
			return -1
		}
		return strings.Compare(a, b)
	})
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			dsn, opts := backendDSN(t, b)
			open := func(t *testing.T, dsn string, opts []Option) *Store {
				s, err := Open(t.Context(), dsn, opts...)
				if err != nil {
					t.Fatalf("open %s: %v", b, err)
				}
				t.Cleanup(func() { s.Close() })
				if strings.HasPrefix(b, "turso") {
					wipeTurso(t, s)
				}
				if err := s.Admin().Install(t.Context()); err != nil {
					t.Fatalf("install: %v", err)
				}
				return s
			}
			shared := open(t, dsn, opts)
			for _, name := range names {
				c := repoCases[name]
				t.Run(name, func(t *testing.T) {
					s := shared
					if c.fresh {
						if strings.HasPrefix(b, "turso") {
							s = open(t, dsn, nil) // the leased server, wiped
						} else {
							fdsn, fopts := backendDSN(t, b)
							s = open(t, fdsn, fopts)
						}
					}
					c.run(&repoEnv{t: t, ctx: t.Context(), s: s, q: s.db, prefix: name + "/"})
				})
			}
		})
	}
}

// TestRepositoryConformanceIsComplete checks that repoCases has a case for
// every method of every repository type in repo_*.go, and no case for a
// method that no longer exists.
func TestRepositoryConformanceIsComplete(t *testing.T) {
	t.Parallel()
	// Helpers that run no statement of their own; the cases of the methods
	// that use them cover them.
	helpers := map[string]bool{"messageRepo.visibilityArgs": true, "messageRepo.settle": true, "messageRepo.floorsArg": true}
	files, err := filepath.Glob("repo_*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no repo_*.go files (%v)", err)
	}
	methods := map[string]bool{}
	fset := token.NewFileSet()
	for _, file := range files {
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || len(fn.Recv.List) != 1 {
				continue
			}
			typ := fn.Recv.List[0].Type
			if star, ok := typ.(*ast.StarExpr); ok {
				typ = star.X
			}
			id, ok := typ.(*ast.Ident)
			if !ok || !strings.HasSuffix(id.Name, "Repo") {
				continue
			}
			methods[id.Name+"."+fn.Name.Name] = true
		}
	}
	if len(methods) < 20 {
		t.Fatalf("found only %d repository methods in %v: is the parse right?", len(methods), files)
	}
	for m := range methods {
		if _, ok := repoCases[m]; !ok && !helpers[m] {
			t.Errorf("repository method %s has no conformance case in repoCases", m)
		}
	}
	for name := range repoCases {
		if !methods[name] {
			t.Errorf("conformance case %s names no repository method", name)
		}
	}
	for name := range helpers {
		if !methods[name] {
			t.Errorf("helper %s is gone: drop it from the list", name)
		}
	}
}

// Setup and assertion helpers. They fail the case on any error.

func (e *repoEnv) must(err error, what string) {
	e.t.Helper()
	if err != nil {
		e.t.Fatalf("%s: %v", what, err)
	}
}

// noRows checks that err is sql.ErrNoRows.
func (e *repoEnv) noRows(err error, what string) {
	e.t.Helper()
	if !errors.Is(err, sql.ErrNoRows) {
		e.t.Errorf("%s: got error %v, want sql.ErrNoRows", what, err)
	}
}

// isErr checks that the Store translates err to target (errUnique,
// errForeignKey).
func (e *repoEnv) isErr(err, target error, what string) {
	e.t.Helper()
	if !errors.Is(e.s.translate(err), target) {
		e.t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

func (e *repoEnv) queue(name string) *Queue {
	e.t.Helper()
	q, err := e.s.queues.insert(e.ctx, e.q, e.prefix+name)
	e.must(err, "insert queue")
	return q
}

func (e *repoEnv) worker(name string, queue *Queue, role string) int64 {
	e.t.Helper()
	id, err := e.s.workers.register(e.ctx, e.q, e.prefix+name, queue.ID, role)
	e.must(err, "register worker")
	return id
}

func (e *repoEnv) setStatus(id int64, to WorkerStatus) {
	e.t.Helper()
	ok, err := e.s.workers.transition(e.ctx, e.q, id, to, []WorkerStatus{WorkerReady, WorkerPolling, WorkerSuspended, WorkerInterrupted, WorkerStopped})
	e.must(err, "transition")
	if !ok {
		e.t.Fatalf("worker %d: no transition to %s", id, to)
	}
}

func (e *repoEnv) enqueueAfter(queue *Queue, payload string, delay time.Duration) int64 {
	e.t.Helper()
	id, err := e.s.messages.enqueue(e.ctx, e.q, queue.ID, []byte(payload), outgoing{vis: visibility{delay: delay}}, 0)
	e.must(err, "enqueue")
	return id
}

func (e *repoEnv) enqueue(queue *Queue, payload string) int64 {
	e.t.Helper()
	return e.enqueueAfter(queue, payload, 0)
}

// claim dequeues up to n messages for consumer with hour-long leases.
func (e *repoEnv) claim(queue *Queue, consumer int64, n int) []*Message {
	e.t.Helper()
	msgs, _, err := e.s.messages.dequeue(e.ctx, e.q, queue, n, time.Hour, consumer, nil)
	e.must(err, "dequeue")
	return msgs
}

func (e *repoEnv) claimIDs(queue *Queue, consumer int64, n int) []int64 {
	e.t.Helper()
	return msgIDs(e.claim(queue, consumer, n))
}

func (e *repoEnv) settle(f settleFunc, ids []int64, consumer int64, queue *Queue) []int64 {
	e.t.Helper()
	got, err := f(e.ctx, e.q, fence{ids: ids, consumer: consumer, queue: queue.ID})
	e.must(err, "settle")
	return got
}

// archived settles id (held by consumer) into the archive, dead or not.
func (e *repoEnv) archived(queue *Queue, consumer, id int64, dead bool) {
	e.t.Helper()
	f := e.s.messages.archive
	if dead {
		f = e.s.messages.deadLetter("dead")
	}
	if got := e.settle(f, []int64{id}, consumer, queue); !slices.Equal(got, []int64{id}) {
		e.t.Fatalf("archive %d: settled %v", id, got)
	}
}

func (e *repoEnv) live(queue *Queue, ids ...int64) []int64 {
	e.t.Helper()
	holders, err := e.s.messages.holders(e.ctx, e.q, ids, queue.ID)
	e.must(err, "holders")
	got := []int64{}
	for id := range holders {
		got = append(got, id)
	}
	slices.Sort(got)
	return got
}

func (e *repoEnv) held(consumer int64) int64 {
	e.t.Helper()
	n, err := e.s.messages.countHeld(e.ctx, e.q, consumer)
	e.must(err, "countHeld")
	return n
}

func (e *repoEnv) getArchived(queue *Queue, id int64) *ArchivedMessage {
	e.t.Helper()
	m, err := e.s.archive.get(e.ctx, e.q, queue, id)
	e.must(err, "archive get")
	return m
}

func (e *repoEnv) equal(what string, got, want any) {
	e.t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Errorf("%s = %v, want %v", what, got, want)
	}
}

// recent checks that t is a database time within a minute of now.
func (e *repoEnv) recent(what string, t time.Time) {
	e.t.Helper()
	if d := time.Since(t); t.IsZero() || d > time.Minute || d < -time.Minute {
		e.t.Errorf("%s = %v, want about now", what, t)
	}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && fmt.Sprint(x) == fmt.Sprint(y)
}

func sorted(ids ...int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	if out == nil {
		out = []int64{}
	}
	return out
}

// held3 is the fixture of the settle cases: queue q, messages m1 and m2
// claimed by consumer c1, m3 claimed by consumer c2, and another queue.
type held3 struct {
	q, other   *Queue
	c1, c2     int64
	m1, m2, m3 int64
}

func (e *repoEnv) held3() held3 {
	e.t.Helper()
	var h held3
	h.q, h.other = e.queue("q"), e.queue("other")
	h.c1, h.c2 = e.worker("c1", h.q, "consumer"), e.worker("c2", h.q, "consumer")
	h.m1, h.m2, h.m3 = e.enqueue(h.q, `1`), e.enqueue(h.q, `2`), e.enqueue(h.q, `3`)
	if got := e.claimIDs(h.q, h.c1, 2); !slices.Equal(got, []int64{h.m1, h.m2}) {
		e.t.Fatalf("c1 claimed %v, want [%d %d]", got, h.m1, h.m2)
	}
	if got := e.claimIDs(h.q, h.c2, 1); !slices.Equal(got, []int64{h.m3}) {
		e.t.Fatalf("c2 claimed %v, want [%d]", got, h.m3)
	}
	return h
}

// settleContract checks the fence every settle statement keeps, then
// settles m1 for its holder c1 and returns the fixture for the case's own
// checks: another consumer, another queue and an empty list change
// nothing; of m1, m3 (c2's) and a missing ID, only m1 is settled.
func (e *repoEnv) settleContract(f settleFunc) held3 {
	e.t.Helper()
	h := e.held3()
	if got := e.settle(f, []int64{h.m1}, h.c2, h.q); len(got) != 0 {
		e.t.Errorf("a settle by a consumer that does not hold the message changed %v", got)
	}
	if got := e.settle(f, []int64{h.m1}, h.c1, h.other); len(got) != 0 {
		e.t.Errorf("a settle naming another queue changed %v", got)
	}
	if got := e.settle(f, nil, h.c1, h.q); len(got) != 0 {
		e.t.Errorf("a settle of no IDs changed %v", got)
	}
	if n := e.held(h.c1); n != 2 {
		e.t.Fatalf("after refused settles c1 holds %d messages, want 2", n)
	}
	if got := e.settle(f, []int64{h.m1, h.m3, h.m3 + 1000}, h.c1, h.q); !slices.Equal(got, []int64{h.m1}) {
		e.t.Fatalf("settle of [m1 m3 missing] by c1 changed %v, want [%d]", got, h.m1)
	}
	if n := e.held(h.c2); n != 1 {
		e.t.Errorf("c2 holds %d messages after c1's settle, want 1 (m3)", n)
	}
	return h
}

// reclaim claims m1 for c2 and returns it (failing when it is not
// claimable now).
func (e *repoEnv) reclaim(h held3) *Message {
	e.t.Helper()
	msgs := e.claim(h.q, h.c2, 10)
	if len(msgs) != 1 || msgs[0].ID != h.m1 {
		e.t.Fatalf("c2 claimed %v, want only m1 (%d)", msgIDs(msgs), h.m1)
	}
	return msgs[0]
}

// A workflow and its runs.

func (e *repoEnv) workflow(name string) (workflowRef, *Queue) {
	e.t.Helper()
	q := e.queue("wfq-" + name)
	id, err := e.s.runs.insertWorkflow(e.ctx, e.q, e.prefix+name, q.ID)
	e.must(err, "insert workflow")
	return workflowRef{id: id, queueID: q.ID}, q
}

func (e *repoEnv) putSchedule(d scheduleDef) *ScheduleInfo {
	e.t.Helper()
	info, err := e.s.schedules.put(e.ctx, e.q, d)
	e.must(err, "put schedule")
	return info
}

func (e *repoEnv) getSchedule(name string) *ScheduleInfo {
	e.t.Helper()
	info, err := e.s.schedules.get(e.ctx, e.q, name)
	e.must(err, "get schedule")
	return info
}

// run creates a QUEUED run of wf driven by a new message on q; it returns
// the run's and the message's IDs.
func (e *repoEnv) run(wf workflowRef, q *Queue, input string) (run, msg int64) {
	e.t.Helper()
	msg = e.enqueue(q, `{}`)
	run, err := e.s.runs.insert(e.ctx, e.q, wf.id, msg, []byte(input), 0, "", 0)
	e.must(err, "insert run")
	return run, msg
}

func (e *repoEnv) getRun(id int64) *RunInfo {
	e.t.Helper()
	r, err := e.s.runs.get(e.ctx, e.q, id)
	e.must(err, "get run")
	return r
}

func (e *repoEnv) end(id int64, st RunStatus) {
	e.t.Helper()
	var end runEnd
	end.status = st
	if st == RunFailed {
		text := "failed"
		end.errText = &text
	} else {
		end.output = json.RawMessage(`1`)
	}
	e.must(e.s.runs.finish(e.ctx, e.q, id, end), "finish")
	if got := e.getRun(id).Status; got != st {
		e.t.Fatalf("run %d is %s after finish, want %s", id, got, st)
	}
}

func (e *repoEnv) steps(run int64) []StepInfo {
	e.t.Helper()
	st, err := e.s.runs.steps(e.ctx, e.q, run)
	e.must(err, "steps")
	return st
}

func step(name string, position int, output string, attempts int) pendingStep {
	return pendingStep{name: name, position: position, output: json.RawMessage(output), attempts: attempts}
}

func (e *repoEnv) stepDone(run int64, p pendingStep) RunStatus {
	e.t.Helper()
	st, err := e.s.runs.stepDone(e.ctx, e.q, run, p)
	e.must(err, "stepDone")
	return st
}

// stepStatus checks the status a step statement returned for a run that
// was QUEUED and is RUNNING now: Postgres returns the status after the
// statement (RUNNING), SQLite and Turso the one before it (QUEUED; a
// trigger marks the run RUNNING after RETURNING is computed). Callers only
// look for CANCELLING, so either is accepted, and the stored status must be
// RUNNING.
func (e *repoEnv) stepStatus(run int64, got RunStatus) {
	e.t.Helper()
	if got != RunRunning && got != RunQueued {
		e.t.Errorf("status after the first step = %s, want RUNNING (or QUEUED)", got)
	}
	e.equal("stored status after the first step", e.getRun(run).Status, RunRunning)
}

// dbMS is t as the text backends store it (millisecond precision).
func dbMS(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

var repoCases = map[string]repoCase{
	// queueRepo

	"queueRepo.insert": {run: func(e *repoEnv) {
		q := e.queue("a")
		if q.ID <= 0 || q.Name != e.prefix+"a" {
			e.t.Errorf("inserted %+v", q)
		}
		e.recent("CreatedAt", q.CreatedAt)
		_, err := e.s.queues.insert(e.ctx, e.q, e.prefix+"a")
		e.isErr(err, errUnique, "insert of a taken name")
		if b := e.queue("b"); b.ID <= q.ID {
			e.t.Errorf("second queue's ID %d is not above %d", b.ID, q.ID)
		}
	}},
	"queueRepo.byName": {run: func(e *repoEnv) {
		q := e.queue("a")
		got, err := e.s.queues.byName(e.ctx, e.q, q.Name)
		e.must(err, "byName")
		if got.ID != q.ID || got.Name != q.Name || !got.CreatedAt.Equal(q.CreatedAt) {
			e.t.Errorf("byName = %+v, want %+v", got, q)
		}
		_, err = e.s.queues.byName(e.ctx, e.q, e.prefix+"missing")
		e.noRows(err, "byName of a missing queue")
	}},
	"queueRepo.list": {fresh: true, run: func(e *repoEnv) {
		qs, err := e.s.queues.list(e.ctx, e.q)
		e.must(err, "list")
		if qs == nil || len(qs) != 0 {
			e.t.Errorf("list of no queues = %v, want an empty slice", qs)
		}
		for _, n := range []string{"b", "c", "a"} {
			e.queue(n)
		}
		qs, err = e.s.queues.list(e.ctx, e.q)
		e.must(err, "list")
		var names []string
		for _, q := range qs {
			names = append(names, strings.TrimPrefix(q.Name, e.prefix))
			e.recent("CreatedAt", q.CreatedAt)
		}
		e.equal("names", names, []string{"a", "b", "c"})
	}},
	"queueRepo.usage": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		p := e.worker("p", q, "producer")
		e.setStatus(p, WorkerStopped)
		m := e.enqueue(q, `1`)
		e.enqueue(q, `2`)
		e.enqueue(q, `3`)
		e.claim(q, c, 1)
		e.archived(q, c, m, true)
		live, dead, workers, err := e.s.queues.usage(e.ctx, e.q, q.ID)
		e.must(err, "usage")
		e.equal("live, dead, workers", []int64{live, dead, workers}, []int64{2, 1, 1})
		_, _, _, err = e.s.queues.usage(e.ctx, e.q, q.ID+1000)
		e.noRows(err, "usage of a missing queue")
	}},
	"queueRepo.purgeMessages": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c := e.worker("c", q, "consumer")
		m := e.enqueue(q, `1`)
		e.claim(q, c, 1)
		e.archived(q, c, m, false)
		a, b := e.enqueue(q, `2`), e.enqueue(q, `3`)
		o := e.enqueue(other, `4`)
		n, err := e.s.queues.purgeMessages(e.ctx, e.q, q.ID)
		e.must(err, "purgeMessages")
		e.equal("purged", n, 2)
		e.equal("live after purge", e.live(q, a, b), []int64{})
		e.equal("other queue's live", e.live(other, o), []int64{o})
		if got, _ := e.s.archive.count(e.ctx, e.q, q.ID, false); got != 1 {
			e.t.Errorf("archive count after purging live messages = %d, want 1", got)
		}
		if n, _ := e.s.queues.purgeMessages(e.ctx, e.q, q.ID); n != 0 {
			e.t.Errorf("second purge = %d, want 0", n)
		}
	}},
	"queueRepo.purgeArchive": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		a, d, l := e.enqueue(q, `1`), e.enqueue(q, `2`), e.enqueue(q, `3`)
		e.claim(q, c, 2)
		e.archived(q, c, a, false)
		e.archived(q, c, d, true)
		n, err := e.s.queues.purgeArchive(e.ctx, e.q, q.ID)
		e.must(err, "purgeArchive")
		e.equal("purged", n, 2)
		for _, dead := range []bool{false, true} {
			if got, _ := e.s.archive.count(e.ctx, e.q, q.ID, dead); got != 0 {
				e.t.Errorf("archive count (dead %v) after purge = %d", dead, got)
			}
		}
		e.equal("live", e.live(q, l), []int64{l})
	}},
	"queueRepo.deleteStoppedWorkers": {run: func(e *repoEnv) {
		q := e.queue("q")
		ready := e.worker("ready", q, "consumer")
		stopped := e.worker("stopped", q, "producer")
		e.setStatus(stopped, WorkerStopped)
		n, err := e.s.queues.deleteStoppedWorkers(e.ctx, e.q, q.ID)
		e.must(err, "deleteStoppedWorkers")
		e.equal("deleted", n, 1)
		ws, err := e.s.workers.list(e.ctx, e.q, q.ID)
		e.must(err, "list workers")
		if len(ws) != 1 || ws[0].ID != ready {
			e.t.Errorf("workers left: %+v, want only %d", ws, ready)
		}
	}},
	"queueRepo.deleteByID": {run: func(e *repoEnv) {
		q := e.queue("q")
		n, err := e.s.queues.deleteByID(e.ctx, e.q, q.ID)
		e.must(err, "deleteByID")
		e.equal("deleted", n, 1)
		_, err = e.s.queues.byName(e.ctx, e.q, q.Name)
		e.noRows(err, "byName after delete")
		if n, _ := e.s.queues.deleteByID(e.ctx, e.q, q.ID); n != 0 {
			e.t.Errorf("second delete = %d, want 0", n)
		}
		busy := e.queue("busy")
		e.enqueue(busy, `1`)
		_, err = e.s.queues.deleteByID(e.ctx, e.q, busy.ID)
		e.isErr(err, errForeignKey, "delete of a queue with live messages")
	}},

	"queueRepo.pause": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		if q.Paused || !q.PausedAt.IsZero() {
			e.t.Errorf("a new queue is paused: %+v", q)
		}
		c := e.worker("c", q, "consumer")
		e.enqueue(q, `1`)
		at, err := e.s.queues.pause(e.ctx, e.q, q.ID)
		e.must(err, "pause")
		e.recent("paused at", at)
		got, err := e.s.queues.byName(e.ctx, e.q, q.Name)
		e.must(err, "byName")
		if !got.Paused || !dbMS(got.PausedAt).Equal(dbMS(at)) {
			e.t.Errorf("paused queue reads as %+v, want paused at %v", got, at)
		}
		if o, _ := e.s.queues.byName(e.ctx, e.q, other.Name); o.Paused {
			e.t.Errorf("pausing q paused %q too", other.Name)
		}
		e.equal("claimed from a paused queue", len(e.claim(q, c, 10)), 0)
		again, err := e.s.queues.pause(e.ctx, e.q, q.ID)
		e.must(err, "pause again")
		if !dbMS(again).Equal(dbMS(at)) {
			e.t.Errorf("second pause moved paused_at from %v to %v", at, again)
		}
		m, err := e.s.stats.queue(e.ctx, e.q, q.Name)
		e.must(err, "metrics")
		if !m.Paused || m.PausedAt.IsZero() || m.Visible != 1 {
			e.t.Errorf("metrics of a paused queue = %+v", m)
		}
		_, err = e.s.queues.pause(e.ctx, e.q, q.ID+1000)
		e.noRows(err, "pause of a missing queue")
	}},
	"queueRepo.resume": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		id := e.enqueue(q, `1`)
		_, err := e.s.queues.pause(e.ctx, e.q, q.ID)
		e.must(err, "pause")
		e.must(e.s.queues.resume(e.ctx, e.q, q.ID), "resume")
		got, err := e.s.queues.byName(e.ctx, e.q, q.Name)
		e.must(err, "byName")
		if got.Paused || !got.PausedAt.IsZero() {
			e.t.Errorf("resumed queue reads as %+v", got)
		}
		e.equal("claimed after resume", e.claimIDs(q, c, 10), []int64{id})
		e.must(e.s.queues.resume(e.ctx, e.q, q.ID), "resume of a running queue")
		e.noRows(e.s.queues.resume(e.ctx, e.q, q.ID+1000), "resume of a missing queue")
	}},

	// archiveRepo

	"messageRepo.list": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c := e.worker("c", q, "consumer")
		list := func(state MessageState, before int64, limit int) []*LiveMessage {
			e.t.Helper()
			ms, err := e.s.messages.list(e.ctx, e.q, q, state, before, limit)
			e.must(err, "list")
			return ms
		}
		ids := func(ms []*LiveMessage) []int64 {
			out := []int64{}
			for _, m := range ms {
				out = append(out, m.ID)
			}
			return out
		}
		if got := list("", math.MaxInt64, 10); got == nil || len(got) != 0 {
			e.t.Errorf("list of an empty queue = %v, want an empty slice", got)
		}
		leased, archived := e.enqueue(q, `{"n":1}`), e.enqueue(q, `4`)
		e.claim(q, c, 2)
		e.archived(q, c, archived, false)
		id, err := e.s.messages.enqueue(e.ctx, e.q, q.ID, []byte(`{"n":2}`),
			outgoing{priority: 3, headers: []byte(`{"h":"<v>"}`)}, 0)
		e.must(err, "enqueue with headers")
		visible := id
		e.claim(q, c, 1) // takes visible, given back at once with its count kept
		e.settle(e.s.messages.release(0), []int64{visible}, c, q)
		delayed := e.enqueueAfter(q, `3`, time.Hour)
		e.enqueue(other, `5`)

		e.equal("all, newest first", ids(list("", math.MaxInt64, 10)), []int64{delayed, visible, leased})
		e.equal("limit 2", ids(list("", math.MaxInt64, 2)), []int64{delayed, visible})
		e.equal("before visible", ids(list("", visible, 10)), []int64{leased})
		e.equal("visible", ids(list(MessageVisible, math.MaxInt64, 10)), []int64{visible})
		e.equal("leased", ids(list(MessageLeased, math.MaxInt64, 10)), []int64{leased})
		e.equal("delayed", ids(list(MessageDelayed, math.MaxInt64, 10)), []int64{delayed})

		for _, m := range list("", math.MaxInt64, 10) {
			if m.Queue != q.Name {
				e.t.Errorf("message %d of queue %q", m.ID, m.Queue)
			}
			e.recent(fmt.Sprint("EnqueuedAt of ", m.ID), m.EnqueuedAt)
			switch m.ID {
			case leased:
				if m.State != MessageLeased || m.ConsumerID != c || m.ReadCount != 1 || !sameJSON(m.Payload, []byte(`{"n":1}`)) {
					e.t.Errorf("leased message = %+v", m)
				}
				if !m.VisibleAt.After(time.Now().Add(30 * time.Minute)) {
					e.t.Errorf("leased message visible at %v, want its lease's end in about an hour", m.VisibleAt)
				}
				e.recent("FirstClaimedAt", m.FirstClaimedAt)
			case visible:
				if m.State != MessageVisible || m.ConsumerID != 0 || m.ReadCount != 1 || m.Priority != 3 ||
					m.Headers["h"] != "<v>" || len(m.Headers) != 1 || !sameJSON(m.Payload, []byte(`{"n":2}`)) {
					e.t.Errorf("visible message = %+v", m)
				}
				e.recent("FirstClaimedAt", m.FirstClaimedAt)
			case delayed:
				if m.State != MessageDelayed || m.ReadCount != 0 || !m.FirstClaimedAt.IsZero() || m.Headers != nil {
					e.t.Errorf("delayed message = %+v", m)
				}
				if !m.VisibleAt.After(time.Now().Add(30 * time.Minute)) {
					e.t.Errorf("delayed message visible at %v, want in about an hour", m.VisibleAt)
				}
			}
		}
	}},
	"statsRepo.throughput": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c := e.worker("c", q, "consumer")
		oc := e.worker("oc", other, "consumer")
		through := func(queue *Queue, window time.Duration, limit int) []ThroughputPoint {
			e.t.Helper()
			got, err := e.s.stats.throughput(e.ctx, e.q, queue.ID, window, limit)
			e.must(err, "throughput")
			return got
		}
		if got := through(q, 10*time.Minute, 100); got == nil || len(got) != 0 {
			e.t.Errorf("throughput of an empty archive = %v, want an empty slice", got)
		}
		var ids []int64
		for i := range 5 {
			ids = append(ids, e.enqueue(q, fmt.Sprint(i)))
		}
		cancelled := e.enqueue(q, `"c"`)
		e.enqueue(other, `"o"`)
		e.claim(q, c, 5)
		e.claim(other, oc, 1)
		for _, id := range ids[:3] {
			e.archived(q, c, id, false)
		}
		e.archived(q, c, ids[3], true) // a dead letter: not counted
		_, err := e.s.messages.cancel(e.ctx, e.q, q.ID, []int64{cancelled})
		e.must(err, "cancel")
		// ids[4] stays leased: not counted.

		got := through(q, 10*time.Minute, 100)
		var n int64
		for _, p := range got {
			n += p.Archived
			if p.Minute.Second() != 0 || p.Minute.Nanosecond() != 0 {
				e.t.Errorf("minute %v is not the start of a minute", p.Minute)
			}
			if d := time.Since(p.Minute); d < -time.Minute || d > 2*time.Minute {
				e.t.Errorf("minute %v, want this one", p.Minute)
			}
			if p.AvgLatency < 0 || p.MaxLatency < p.AvgLatency || p.MaxLatency > time.Minute {
				e.t.Errorf("latencies avg %v max %v", p.AvgLatency, p.MaxLatency)
			}
		}
		if n != 3 || len(got) < 1 || len(got) > 2 {
			e.t.Errorf("throughput = %+v, want 3 archived in one or two minutes", got)
		}
		n = 0
		for _, p := range through(q, 10*time.Minute, 2) {
			n += p.Archived
		}
		e.equal("archived counted with a scan limit of 2 (the newest two are dead and archived)", n, 1)
		e.equal("other queue (nothing archived)", len(through(other, 10*time.Minute, 100)), 0)
	}},

	"archiveRepo.get": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c := e.worker("c", q, "consumer")
		id := e.enqueue(q, `{"k": [1, 2]}`)
		e.claim(q, c, 1)
		e.archived(q, c, id, false)
		m := e.getArchived(q, id)
		if m.ID != id || m.Queue != q.Name || m.ReadCount != 1 || m.Dead || m.LastError != "" || !sameJSON(m.Payload, []byte(`{"k":[1,2]}`)) {
			e.t.Errorf("archived message = %+v", m)
		}
		e.recent("EnqueuedAt", m.EnqueuedAt)
		e.recent("ArchivedAt", m.ArchivedAt)
		if m.ArchivedAt.Before(m.EnqueuedAt) {
			e.t.Errorf("archived at %v, before its enqueue at %v", m.ArchivedAt, m.EnqueuedAt)
		}
		_, err := e.s.archive.get(e.ctx, e.q, other, id)
		e.noRows(err, "get through another queue")
		_, err = e.s.archive.get(e.ctx, e.q, q, id+1000)
		e.noRows(err, "get of a missing ID")
	}},
	"archiveRepo.list": {run: func(e *repoEnv) {
		q := e.queue("q")
		got, err := e.s.archive.list(e.ctx, e.q, q, false, math.MaxInt64, 10)
		e.must(err, "list")
		if got == nil || len(got) != 0 {
			e.t.Errorf("list of an empty archive = %v, want an empty slice", got)
		}
		c := e.worker("c", q, "consumer")
		var ids []int64
		for i := range 4 {
			ids = append(ids, e.enqueue(q, fmt.Sprint(i)))
		}
		e.claim(q, c, 4)
		for _, id := range ids[:3] {
			e.archived(q, c, id, false)
		}
		e.archived(q, c, ids[3], true)
		list := func(dead bool, before int64, limit int) []int64 {
			ms, err := e.s.archive.list(e.ctx, e.q, q, dead, before, limit)
			e.must(err, "list")
			var out []int64
			for _, m := range ms {
				if m.Queue != q.Name {
					e.t.Errorf("listed message of queue %q", m.Queue)
				}
				out = append(out, m.ID)
			}
			return out
		}
		e.equal("all, newest first", list(false, math.MaxInt64, 10), []int64{ids[2], ids[1], ids[0]})
		e.equal("limit 2", list(false, math.MaxInt64, 2), []int64{ids[2], ids[1]})
		e.equal("before the second", list(false, ids[1], 10), []int64{ids[0]})
		e.equal("dead letters", list(true, math.MaxInt64, 10), []int64{ids[3]})
	}},
	"archiveRepo.count": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c := e.worker("c", q, "consumer")
		a, b, d := e.enqueue(q, `1`), e.enqueue(q, `2`), e.enqueue(q, `3`)
		e.claim(q, c, 3)
		e.archived(q, c, a, false)
		e.archived(q, c, b, false)
		e.archived(q, c, d, true)
		for _, tc := range []struct {
			q    *Queue
			dead bool
			want int64
		}{{q, false, 2}, {q, true, 1}, {other, false, 0}} {
			n, err := e.s.archive.count(e.ctx, e.q, tc.q.ID, tc.dead)
			e.must(err, "count")
			e.equal(fmt.Sprintf("count(%s, dead %v)", tc.q.Name, tc.dead), n, tc.want)
		}
	}},
	"archiveRepo.replay": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		d1, d2, a := e.enqueue(q, `{"n":1}`), e.enqueue(q, `2`), e.enqueue(q, `3`)
		e.claim(q, c, 3)
		e.archived(q, c, d1, true)
		e.archived(q, c, d2, true)
		e.archived(q, c, a, false)
		replay := func(what string, ids []int64, all bool, want int64) {
			e.t.Helper()
			n, err := e.s.archive.replay(e.ctx, e.q, q.ID, ids, all)
			e.must(err, what)
			e.equal(what, n, want)
		}
		replay("replay of no IDs", nil, false, 0)
		e.equal("live after replaying none", e.live(q, d1, d2, a), []int64{})
		replay("replay d1", []int64{d1}, false, 1)
		e.equal("live after replaying d1", e.live(q, d1, d2, a), []int64{d1})
		if n, _ := e.s.archive.count(e.ctx, e.q, q.ID, true); n != 1 {
			e.t.Errorf("dead letters after replaying d1: %d, want 1", n)
		}
		msgs := e.claim(q, c, 10)
		if len(msgs) != 1 || msgs[0].ID != d1 || msgs[0].ReadCount != 1 || msgs[0].LastError != "" || !sameJSON(msgs[0].Payload, []byte(`{"n":1}`)) {
			e.t.Errorf("replayed message claimed as %+v, want d1 with a fresh read count and no error", msgs)
		}
		replay("replay d1 again", []int64{d1}, false, 0)
		// all: every dead letter left, never an archived message that is not dead.
		replay("replay all", nil, true, 1)
		e.equal("live after replaying all", e.live(q, d1, d2, a), sorted(d1, d2))
		if n, _ := e.s.archive.count(e.ctx, e.q, q.ID, true); n != 0 {
			e.t.Errorf("dead letters after replaying all: %d, want 0", n)
		}
		if n, _ := e.s.archive.count(e.ctx, e.q, q.ID, false); n != 1 {
			e.t.Errorf("replay touched archived messages that are not dead: %d left, want 1", n)
		}
		// Keys: a dead letter whose key a live message holds stays dead; of
		// two dead letters with one key, only the newer is replayed.
		kq := e.queue("keys")
		keyed := func(key string) int64 {
			e.t.Helper()
			ids, err := e.s.messages.enqueueJobs(e.ctx, e.q, kq.ID, []pendingJob{{payload: []byte(`1`), out: outgoing{key: key}}}, 0)
			e.must(err, "enqueueJobs")
			return ids[0]
		}
		k1 := keyed("k")
		e.claim(kq, c, 10)
		e.archived(kq, c, k1, true)
		k2 := keyed("k")
		e.claim(kq, c, 10)
		e.archived(kq, c, k2, true)
		held := keyed("held")
		e.claim(kq, c, 10)
		e.archived(kq, c, held, true)
		holder := keyed("held")
		n, err := e.s.archive.replay(e.ctx, e.q, kq.ID, nil, true)
		e.must(err, "replay with keys")
		e.equal("replayed with keys", n, 1)
		e.equal("live after replaying with keys", e.live(kq, k1, k2, held, holder), sorted(k2, holder))
	}},
	"archiveRepo.purgeDead": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		a, d1, d2 := e.enqueue(q, `1`), e.enqueue(q, `2`), e.enqueue(q, `3`)
		e.claim(q, c, 3)
		e.archived(q, c, a, false)
		e.archived(q, c, d1, true)
		e.archived(q, c, d2, true)
		n, err := e.s.archive.purgeDead(e.ctx, e.q, q.ID)
		e.must(err, "purgeDead")
		e.equal("purged", n, 2)
		live, _ := e.s.archive.count(e.ctx, e.q, q.ID, false)
		dead, _ := e.s.archive.count(e.ctx, e.q, q.ID, true)
		e.equal("archived, dead", []int64{live, dead}, []int64{1, 0})
	}},

	"retentionRepo.put": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		e.must(e.s.retention.put(e.ctx, e.q, q.ID, Retention{Archived: 90 * time.Minute}), "put")
		e.must(e.s.retention.put(e.ctx, e.q, other.ID, Retention{DeadLetters: 1500 * time.Millisecond}), "put other")
		got, err := e.s.retention.get(e.ctx, e.q, q.ID)
		e.must(err, "get")
		e.equal("policy", got, Retention{Archived: 90 * time.Minute})
		// put replaces the whole policy.
		e.must(e.s.retention.put(e.ctx, e.q, q.ID, Retention{DeadLetters: 48 * time.Hour}), "replace")
		got, err = e.s.retention.get(e.ctx, e.q, q.ID)
		e.must(err, "get")
		e.equal("replaced policy", got, Retention{DeadLetters: 48 * time.Hour})
		got, err = e.s.retention.get(e.ctx, e.q, other.ID)
		e.must(err, "get other")
		e.equal("other queue's policy", got, Retention{DeadLetters: 1500 * time.Millisecond})
	}},
	"retentionRepo.get": {run: func(e *repoEnv) {
		q := e.queue("q")
		got, err := e.s.retention.get(e.ctx, e.q, q.ID)
		e.must(err, "get without a policy")
		e.equal("no policy", got, Retention{})
		e.must(e.s.retention.put(e.ctx, e.q, q.ID, Retention{Archived: time.Second, DeadLetters: 7 * 24 * time.Hour}), "put")
		got, err = e.s.retention.get(e.ctx, e.q, q.ID)
		e.must(err, "get")
		e.equal("policy", got, Retention{Archived: time.Second, DeadLetters: 7 * 24 * time.Hour})
	}},
	"retentionRepo.clear": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		for _, id := range []int64{q.ID, other.ID} {
			e.must(e.s.retention.put(e.ctx, e.q, id, Retention{Archived: time.Hour}), "put")
		}
		n, err := e.s.retention.clear(e.ctx, e.q, q.ID)
		e.must(err, "clear")
		e.equal("cleared", n, 1)
		n, err = e.s.retention.clear(e.ctx, e.q, q.ID)
		e.must(err, "clear again")
		e.equal("cleared again", n, 0)
		got, _ := e.s.retention.get(e.ctx, e.q, q.ID)
		e.equal("policy after clear", got, Retention{})
		got, _ = e.s.retention.get(e.ctx, e.q, other.ID)
		e.equal("other queue's policy", got, Retention{Archived: time.Hour})
	}},
	// The archive's partitions: on Postgres one per UTC day (Install made
	// today's and the next days'); SQLite and Turso have none and the
	// statements change nothing.
	"retentionRepo.addPartitions": {run: func(e *repoEnv) {
		today := time.Now().UTC().Truncate(24 * time.Hour)
		n, err := e.s.retention.addPartitions(e.ctx, e.q, today.AddDate(0, 0, -2), today)
		e.must(err, "add")
		want := int64(2) // the two past days; today's exists
		if e.s.d.name != Postgres {
			want = 0
		}
		e.equal("partitions created", n, want)
		n, err = e.s.retention.addPartitions(e.ctx, e.q, today.AddDate(0, 0, -2), today)
		e.must(err, "add again")
		e.equal("partitions created again", n, 0)
	}},
	"retentionRepo.partitions": {run: func(e *repoEnv) {
		ps, err := e.s.retention.partitions(e.ctx, e.q)
		e.must(err, "partitions")
		if e.s.d.name != Postgres {
			e.equal("partitions", len(ps), 0)
			return
		}
		e.equal("default partition first", len(ps) > 0 && ps[0].Default, true)
		days := map[time.Time]bool{}
		for _, p := range ps {
			days[p.From] = true
		}
		today := time.Now().UTC().Truncate(24 * time.Hour)
		e.equal("today's and the next days' partitions", []bool{days[today], days[today.AddDate(0, 0, 1)], days[today.AddDate(0, 0, ArchivePartitionsAhead)]}, []bool{true, true, true})
	}},
	"retentionRepo.dropPartition": {run: func(e *repoEnv) {
		today := time.Now().UTC().Truncate(24 * time.Hour)
		_, err := e.s.retention.addPartitions(e.ctx, e.q, today.AddDate(0, 0, -3), today)
		e.must(err, "add")
		// Nothing kept is expired: a policy with no queues' rows still
		// drops the empty past days, oldest first, one per call.
		name, n, d, ok, err := e.s.retention.dropPartition(e.ctx, e.q, false, 0, Retention{Archived: time.Hour})
		e.must(err, "drop")
		if e.s.d.name != Postgres {
			e.equal("dropped", ok, false)
			return
		}
		e.equal("dropped an empty past day", []any{ok, strings.Contains(name, "pgqrs_archive_p"), n, d}, []any{true, true, int64(0), int64(0)})
	}},
	"retentionRepo.expire": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c, oc := e.worker("c", q, "consumer"), e.worker("oc", other, "consumer")
		var done, dead []int64
		for i := range 5 {
			id := e.enqueue(q, `1`)
			if i < 3 {
				done = append(done, id)
			} else {
				dead = append(dead, id)
			}
		}
		live := e.enqueue(q, `2`)
		e.claim(q, c, 5)
		for _, id := range done {
			e.archived(q, c, id, false)
		}
		for _, id := range dead {
			e.archived(q, c, id, true)
		}
		o := e.enqueue(other, `3`)
		e.claim(other, oc, 1)
		e.archived(other, oc, o, false)
		count := func(queue *Queue, dead bool) int64 {
			n, err := e.s.archive.count(e.ctx, e.q, queue.ID, dead)
			e.must(err, "count")
			return n
		}
		// Nothing is an hour old.
		n, err := e.s.retention.expire(e.ctx, e.q, q.ID, false, time.Hour, 10)
		e.must(err, "expire an hour")
		e.equal("expired older than an hour", n, 0)
		// A negative age puts the cutoff in the future: everything archived
		// is older. Batches stop at limit; dead letters are another kind.
		n, err = e.s.retention.expire(e.ctx, e.q, q.ID, false, -time.Hour, 2)
		e.must(err, "expire")
		e.equal("first batch", n, 2)
		n, err = e.s.retention.expire(e.ctx, e.q, q.ID, false, -time.Hour, 2)
		e.must(err, "expire")
		e.equal("second batch", n, 1)
		e.equal("archived, dead left in q", []int64{count(q, false), count(q, true)}, []int64{0, 2})
		e.equal("other queue's archive", count(other, false), 1)
		n, err = e.s.retention.expire(e.ctx, e.q, q.ID, true, -time.Hour, 10)
		e.must(err, "expire dead")
		e.equal("dead letters expired", n, 2)
		e.equal("live message kept", e.live(q, live), []int64{live})
		n, err = e.s.retention.expire(e.ctx, e.q, other.ID, false, -time.Hour, 10)
		e.must(err, "expire other")
		e.equal("expired in the other queue", n, 1)
	}},

	"archiveRepo.cancelled": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c := e.worker("c", q, "consumer")
		cancelled, archived, dead, live := e.enqueue(q, `1`), e.enqueue(q, `2`), e.enqueue(q, `3`), e.enqueue(q, `4`)
		e.claim(q, c, 3)
		e.archived(q, c, archived, false)
		e.archived(q, c, dead, true)
		_, err := e.s.messages.cancel(e.ctx, e.q, q.ID, []int64{cancelled})
		e.must(err, "cancel")
		all := []int64{cancelled, archived, dead, live, live + 1000}
		got, err := e.s.archive.cancelled(e.ctx, e.q, q.ID, all)
		e.must(err, "cancelled")
		e.equal("cancelled of all", got, []int64{cancelled})
		got, err = e.s.archive.cancelled(e.ctx, e.q, other.ID, all)
		e.must(err, "cancelled")
		e.equal("cancelled through another queue", got, []int64{})
		got, err = e.s.archive.cancelled(e.ctx, e.q, q.ID, nil)
		e.must(err, "cancelled")
		e.equal("cancelled of no IDs", got, []int64{})
	}},

	// statsRepo

	"statsRepo.queue": {run: func(e *repoEnv) {
		q := e.queue("q")
		m, err := e.s.stats.queue(e.ctx, e.q, q.Name)
		e.must(err, "metrics")
		if m.Queue != q.Name || m.Visible+m.Delayed+m.Leased+m.Archived+m.Dead != 0 || !m.OldestPending.IsZero() || m.OldestPendingAge != 0 {
			e.t.Errorf("metrics of an empty queue = %+v", m)
		}
		c := e.worker("c", q, "consumer")
		e.enqueue(q, `1`) // stays leased
		a, d := e.enqueue(q, `2`), e.enqueue(q, `3`)
		e.claim(q, c, 3)
		e.archived(q, c, a, false)
		e.archived(q, c, d, true)
		e.enqueue(q, `4`)
		e.enqueueAfter(q, `5`, time.Hour)
		m, err = e.s.stats.queue(e.ctx, e.q, q.Name)
		e.must(err, "metrics")
		e.equal("visible, leased, delayed, pending, archived, dead",
			[]int64{m.Visible, m.Leased, m.Delayed, m.Pending, m.Archived, m.Dead}, []int64{1, 1, 1, 2, 1, 1})
		e.recent("OldestPending", m.OldestPending)
		e.recent("NewestEnqueued", m.NewestEnqueued)
		if m.OldestPendingAge < 0 || m.OldestPendingAge > time.Minute {
			e.t.Errorf("OldestPendingAge = %v", m.OldestPendingAge)
		}
		_, err = e.s.stats.queue(e.ctx, e.q, e.prefix+"missing")
		e.noRows(err, "metrics of a missing queue")
	}},
	// The counters (PostgreSQL; elsewhere both do nothing): compact folds
	// only sessions that are gone, so the case's own stays; recount
	// rebuilds them from the rows, whatever they said.
	"statsRepo.compact": {fresh: true, run: func(e *repoEnv) {
		q := e.queue("q")
		e.enqueue(q, `1`)
		_, err := e.s.stats.compact(e.ctx, e.q)
		e.must(err, "compact")
		m, err := e.s.stats.queue(e.ctx, e.q, q.Name)
		e.must(err, "metrics")
		e.equal("visible after a compaction", m.Visible, int64(1))
	}},
	"statsRepo.recount": {fresh: true, run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		a := e.enqueue(q, `1`)
		e.enqueue(q, `2`)
		e.claim(q, c, 1)
		e.archived(q, c, a, false)
		if e.s.d.name == Postgres {
			_, err := e.q.ExecContext(e.ctx, e.s.d.qualify(`UPDATE pgqrs_live_counts SET live = live + 40`))
			e.must(err, "damage the counters")
		}
		e.must(e.s.stats.recount(e.ctx, e.q), "recount")
		m, err := e.s.stats.queue(e.ctx, e.q, q.Name)
		e.must(err, "metrics")
		e.equal("pending, archived after a recount", [2]int64{m.Pending, m.Archived}, [2]int64{1, 1})
	}},
	"statsRepo.queues": {fresh: true, run: func(e *repoEnv) {
		ms, err := e.s.stats.queues(e.ctx, e.q)
		e.must(err, "queues")
		e.equal("metrics of no queues", len(ms), 0)
		b, _ := e.queue("b"), e.queue("a")
		e.enqueue(b, `1`)
		ms, err = e.s.stats.queues(e.ctx, e.q)
		e.must(err, "queues")
		if len(ms) != 2 || ms[0].Queue != e.prefix+"a" || ms[1].Queue != e.prefix+"b" || ms[0].Visible != 0 || ms[1].Visible != 1 {
			e.t.Errorf("metrics = %+v, want a (empty) then b (one visible)", ms)
		}
	}},
	"statsRepo.system": {fresh: true, run: func(e *repoEnv) {
		ms, err := e.s.d.loadMigrations()
		e.must(err, "migrations")
		q := e.queue("q")
		e.queue("r")
		c := e.worker("c", q, "consumer")
		p := e.worker("p", q, "producer")
		e.setStatus(p, WorkerStopped)
		a, d := e.enqueue(q, `1`), e.enqueue(q, `2`)
		e.enqueue(q, `3`)
		e.claim(q, c, 2)
		e.archived(q, c, a, false)
		e.archived(q, c, d, true)
		st, err := e.s.stats.system(e.ctx, e.q)
		e.must(err, "system")
		want := SystemStats{Queues: 2, LiveMessages: 1, Archived: 1, Dead: 1, LiveWorkers: 1, Workers: 2, SchemaVersion: int64(ms[len(ms)-1].version)}
		e.equal("system stats", st, want)
	}},

	// messageRepo

	"messageRepo.cancel": {run: func(e *repoEnv) {
		h := e.held3() // m1, m2 held by c1; m3 by c2
		done := e.enqueue(h.q, `6`)
		e.claim(h.q, h.c1, 1)
		e.archived(h.q, h.c1, done, false)
		pending := e.enqueue(h.q, `{"p":1}`)
		delayed := e.enqueueAfter(h.q, `5`, time.Hour)
		other := e.enqueue(h.other, `7`)
		got, err := e.s.messages.cancel(e.ctx, e.q, h.q.ID, []int64{other})
		e.must(err, "cancel")
		e.equal("cancel through another queue", got, []int64{})
		got, err = e.s.messages.cancel(e.ctx, e.q, h.q.ID, nil)
		e.must(err, "cancel")
		e.equal("cancel of no IDs", got, []int64{})
		got, err = e.s.messages.cancel(e.ctx, e.q, h.q.ID, []int64{pending, delayed, h.m1, done, done + 1000})
		e.must(err, "cancel")
		e.equal("cancelled", sorted(got...), sorted(pending, delayed, h.m1))
		e.equal("live after cancel", e.live(h.q, pending, delayed, h.m1, h.m2, h.m3), sorted(h.m2, h.m3))
		e.equal("other queue's live", e.live(h.other, other), []int64{other})
		// Its holder's settles find it gone.
		if got := e.settle(e.s.messages.archive, []int64{h.m1}, h.c1, h.q); len(got) != 0 {
			e.t.Errorf("the holder archived a cancelled message: %v", got)
		}
		e.equal("c1 holds", e.held(h.c1), 1)
		m := e.getArchived(h.q, pending)
		if !m.Cancelled || m.Dead || !sameJSON(m.Payload, []byte(`{"p":1}`)) {
			e.t.Errorf("cancelled message archived as %+v", m)
		}
		e.recent("ArchivedAt", m.ArchivedAt)
		if m := e.getArchived(h.q, h.m1); !m.Cancelled || m.ReadCount != 1 {
			e.t.Errorf("cancelled leased message archived as %+v", m)
		}
		if m := e.getArchived(h.q, done); m.Cancelled {
			e.t.Errorf("an archived message reads as cancelled")
		}
		n, err := e.s.archive.count(e.ctx, e.q, h.q.ID, true)
		e.must(err, "count")
		e.equal("dead letters", n, 0)
		n, err = e.s.archive.count(e.ctx, e.q, h.q.ID, false)
		e.must(err, "count")
		e.equal("archived (cancelled included)", n, 4)
		got, err = e.s.messages.cancel(e.ctx, e.q, h.q.ID, []int64{pending})
		e.must(err, "cancel")
		e.equal("cancel again", got, []int64{})
	}},

	"messageRepo.enqueue": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		now := e.enqueue(q, `{"a": "x"}`)
		later := e.enqueueAfter(q, `2`, time.Hour)
		past, err := e.s.messages.enqueue(e.ctx, e.q, q.ID, []byte(`3`), outgoing{vis: visibility{at: time.Now().Add(-time.Hour)}}, 0)
		e.must(err, "enqueue at a past time")
		future, err := e.s.messages.enqueue(e.ctx, e.q, q.ID, []byte(`4`), outgoing{vis: visibility{at: time.Now().Add(time.Hour)}}, 0)
		e.must(err, "enqueue at a future time")
		if !(now < later && later < past && past < future) {
			e.t.Errorf("IDs %d %d %d %d do not ascend", now, later, past, future)
		}
		// Claimed in visibility order: the one visible an hour ago first.
		e.equal("first claimable", e.claimIDs(q, c, 1), []int64{past})
		msgs := e.claim(q, c, 10)
		e.equal("then", msgIDs(msgs), []int64{now})
		if len(msgs) == 1 {
			e.recent("EnqueuedAt", msgs[0].EnqueuedAt)
			if !sameJSON(msgs[0].Payload, []byte(`{"a":"x"}`)) {
				e.t.Errorf("payload = %s", msgs[0].Payload)
			}
		}
		e.equal("live", e.live(q, now, later, past, future), sorted(now, later, past, future))
		_, err = e.s.messages.enqueue(e.ctx, e.q, q.ID+1000, []byte(`1`), outgoing{}, 0)
		e.isErr(err, errForeignKey, "enqueue to a missing queue")
	}},
	"messageRepo.enqueueBatch": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		p := e.worker("p", q, "producer")
		ids, err := e.s.messages.enqueueBatch(e.ctx, e.q, q.ID, []string{`"a"`, `{"b": 1}`, `3`}, outgoing{}, p)
		e.must(err, "enqueueBatch")
		if len(ids) != 3 || !slices.IsSorted(ids) {
			e.t.Fatalf("IDs %v: want three, ascending", ids)
		}
		msgs := e.claim(q, c, 10)
		e.equal("claimed in array order", msgIDs(msgs), ids)
		for i, want := range []string{`"a"`, `{"b":1}`, `3`} {
			if i < len(msgs) && !sameJSON(msgs[i].Payload, []byte(want)) {
				e.t.Errorf("payload %d = %s, want %s", i, msgs[i].Payload, want)
			}
		}
		none, err := e.s.messages.enqueueBatch(e.ctx, e.q, q.ID, []string{}, outgoing{}, 0)
		e.must(err, "empty batch")
		e.equal("IDs of an empty batch", len(none), 0)
		delayed, err := e.s.messages.enqueueBatch(e.ctx, e.q, q.ID, []string{`1`, `2`}, outgoing{vis: visibility{delay: time.Hour}}, 0)
		e.must(err, "delayed batch")
		e.equal("claimable of a delayed batch", e.claimIDs(q, c, 10), []int64{})
		e.equal("live", e.live(q, delayed...), sorted(delayed...))
	}},
	"messageRepo.enqueueJobs": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c := e.worker("c", q, "consumer")
		p := e.worker("p", q, "producer")
		jobs := func(js ...pendingJob) []int64 {
			e.t.Helper()
			ids, err := e.s.messages.enqueueJobs(e.ctx, e.q, q.ID, js, p)
			e.must(err, "enqueueJobs")
			if len(ids) != len(js) {
				e.t.Fatalf("enqueueJobs returned %d IDs for %d jobs", len(ids), len(js))
			}
			return ids
		}
		job := func(payload string, o outgoing) pendingJob { return pendingJob{payload: []byte(payload), out: o} }
		ids := jobs(
			job(`{"a": 1}`, outgoing{priority: 3, headers: []byte(`{"h":"1"}`)}),
			job(`"k"`, outgoing{key: "k"}),
			job(`"later"`, outgoing{key: "later", vis: visibility{delay: time.Hour}}),
			job(`"at"`, outgoing{vis: visibility{at: time.Now().Add(-time.Hour)}}),
			job(`"last"`, outgoing{}),
		)
		if slices.Contains(ids, 0) || !slices.IsSorted(ids) {
			e.t.Fatalf("IDs %v: want five, ascending in array order", ids)
		}
		// The key is taken: nothing inserted, 0 for it; the others go in.
		again := jobs(job(`"k again"`, outgoing{key: "k"}), job(`"free"`, outgoing{key: "free"}), job(`"later"`, outgoing{key: "later"}))
		if again[0] != 0 || again[1] == 0 || again[2] != 0 {
			e.t.Errorf("taken keys: IDs %v, want [0 id 0]", again)
		}
		msgs := e.claim(q, c, 10)
		e.equal("claimed: priority 0 by ID, then priority 3",
			msgIDs(msgs), []int64{ids[1], ids[3], ids[4], again[1], ids[0]})
		if len(msgs) == 5 {
			if m := msgs[4]; m.Priority != 3 || m.Headers["h"] != "1" || !sameJSON(m.Payload, []byte(`{"a":1}`)) {
				e.t.Errorf("first job claimed as %+v", m)
			}
			if string(msgs[2].Payload) != `"last"` {
				e.t.Errorf("payload text %s, want it as sent", msgs[2].Payload)
			}
		}
		// Archived, k is free, unless a job names a period covering it.
		e.archived(q, c, ids[1], false)
		period := jobs(job(`1`, outgoing{key: "k", uniqueFor: time.Hour}))
		e.equal("a key archived within the period", period, []int64{0})
		free := jobs(job(`1`, outgoing{key: "k"}))
		if free[0] == 0 {
			e.t.Errorf("a key archived, without a period, is still taken")
		}
		// Another queue's keys are its own.
		o, err := e.s.messages.enqueueJobs(e.ctx, e.q, other.ID, []pendingJob{job(`1`, outgoing{key: "k"})}, 0)
		e.must(err, "enqueueJobs in another queue")
		if o[0] == 0 {
			e.t.Errorf("a key of another queue is taken")
		}
		_, err = e.s.messages.enqueueJobs(e.ctx, e.q, q.ID+1000, []pendingJob{job(`1`, outgoing{})}, 0)
		e.isErr(err, errForeignKey, "enqueueJobs to a missing queue")
	}},
	"messageRepo.keyHolders": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		enq := func(key string) int64 {
			e.t.Helper()
			ids, err := e.s.messages.enqueueJobs(e.ctx, e.q, q.ID, []pendingJob{{payload: []byte(`1`), out: outgoing{key: key}}}, 0)
			e.must(err, "enqueueJobs")
			return ids[0]
		}
		live := enq("live")
		old := enq("archived")
		e.claim(q, c, 10)
		e.archived(q, c, old, false)
		newer := enq("archived")
		e.claim(q, c, 10)
		e.archived(q, c, newer, false)
		dead := enq("dead")
		e.claim(q, c, 10)
		e.archived(q, c, dead, true)
		holders := func(claims ...keyClaim) map[string]int64 {
			e.t.Helper()
			h, err := e.s.messages.keyHolders(e.ctx, e.q, q.ID, claims)
			e.must(err, "keyHolders")
			return h
		}
		e.equal("live only", holders(keyClaim{key: "live"}, keyClaim{key: "archived"}, keyClaim{key: "dead"}, keyClaim{key: "none"}),
			map[string]int64{"live": live})
		hour := time.Hour
		e.equal("within an hour", holders(keyClaim{key: "live", uniqueFor: hour}, keyClaim{key: "archived", uniqueFor: hour},
			keyClaim{key: "dead", uniqueFor: hour}, keyClaim{key: "none", uniqueFor: hour}),
			map[string]int64{"live": live, "archived": newer, "dead": dead})
		// A live holder wins over archived ones.
		again := enq("archived")
		e.equal("live over archived", holders(keyClaim{key: "archived", uniqueFor: hour}), map[string]int64{"archived": again})
		e.equal("no claims", holders(), map[string]int64{})
	}},
	"messageRepo.dequeue": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c1, c2 := e.worker("c1", q, "consumer"), e.worker("c2", q, "consumer")
		a, b, cc := e.enqueue(q, `1`), e.enqueue(q, `2`), e.enqueue(q, `3`)
		e.enqueue(other, `4`)
		e.equal("an unknown consumer claims", e.claimIDs(q, c2+1000, 10), []int64{})
		e.setStatus(c2, WorkerSuspended)
		e.equal("a suspended consumer claims", e.claimIDs(q, c2, 10), []int64{})
		e.setStatus(c2, WorkerReady)
		before := time.Now()
		msgs := e.claim(q, c1, 2)
		e.equal("first claim (limit 2, oldest first)", msgIDs(msgs), []int64{a, b})
		for _, m := range msgs {
			if m.ReadCount != 1 || m.Queue != q.Name || m.LastError != "" {
				e.t.Errorf("claimed %+v", m)
			}
			if d := m.VisibleAt.Sub(before); d < time.Hour-time.Minute || d > time.Hour+time.Minute {
				e.t.Errorf("lease ends %v after the claim, want an hour", d)
			}
		}
		e.equal("second claim", e.claimIDs(q, c2, 10), []int64{cc})
		e.equal("claim of an empty queue", e.claimIDs(q, c1, 10), []int64{})
		e.settle(e.s.messages.release(0), []int64{a}, c1, q)
		msgs = e.claim(q, c2, 10)
		if len(msgs) != 1 || msgs[0].ID != a || msgs[0].ReadCount != 2 {
			e.t.Errorf("claim after a release = %+v, want a with read count 2", msgs)
		}
		if n := e.held(c2); n != 2 {
			e.t.Errorf("c2 holds %d, want 2", n)
		}
	}},
	"messageRepo.archive": {run: func(e *repoEnv) {
		h := e.settleContract(e.s.messages.archive)
		e.equal("live", e.live(h.q, h.m1, h.m2), []int64{h.m2})
		m := e.getArchived(h.q, h.m1)
		if m.Dead || m.ReadCount != 1 || m.LastError != "" {
			e.t.Errorf("archived as %+v", m)
		}
	}},
	"messageRepo.delete": {run: func(e *repoEnv) {
		h := e.settleContract(e.s.messages.delete)
		e.equal("live", e.live(h.q, h.m1, h.m2), []int64{h.m2})
		_, err := e.s.archive.get(e.ctx, e.q, h.q, h.m1)
		e.noRows(err, "archive get of a deleted message")
	}},
	"messageRepo.unclaim": {run: func(e *repoEnv) {
		h := e.settleContract(e.s.messages.unclaim)
		if m := e.reclaim(h); m.ReadCount != 1 {
			e.t.Errorf("read count after unclaim and claim = %d, want 1 (restored)", m.ReadCount)
		}
	}},
	"messageRepo.release": {run: func(e *repoEnv) {
		h := e.settleContract(e.s.messages.release(0))
		if m := e.reclaim(h); m.ReadCount != 2 {
			e.t.Errorf("read count after release and claim = %d, want 2 (kept)", m.ReadCount)
		}
		e.settle(e.s.messages.release(time.Hour), []int64{h.m2}, h.c1, h.q)
		e.equal("claimable after a release for an hour", e.claimIDs(h.q, h.c2, 10), []int64{})
		e.equal("c1 holds", e.held(h.c1), 0)
	}},
	"messageRepo.extend": {run: func(e *repoEnv) {
		// The contract is checked with an extension to now: the lease ends,
		// which is what makes the new lease time observable.
		h := e.settleContract(e.s.messages.extend(0))
		e.equal("c1 holds (m1's lease ended)", e.held(h.c1), 1)
		if m := e.reclaim(h); m.ReadCount != 2 {
			e.t.Errorf("read count after the lease ended = %d, want 2", m.ReadCount)
		}
		if got := e.settle(e.s.messages.extend(2*time.Hour), []int64{h.m2}, h.c1, h.q); !slices.Equal(got, []int64{h.m2}) {
			e.t.Errorf("extend of m2 = %v", got)
		}
		e.equal("c1 holds after extending m2", e.held(h.c1), 1)
		e.equal("claimable", e.claimIDs(h.q, h.c2, 10), []int64{})
	}},
	"messageRepo.fail": {run: func(e *repoEnv) {
		h := e.settleContract(e.s.messages.fail(0, "boom"))
		if m := e.reclaim(h); m.ReadCount != 2 || m.LastError != "boom" {
			e.t.Errorf("after fail and claim: %+v, want read count 2 and error boom", m)
		}
		e.settle(e.s.messages.fail(time.Hour, "later"), []int64{h.m2}, h.c1, h.q)
		e.equal("claimable after a fail with an hour's delay", e.claimIDs(h.q, h.c2, 10), []int64{})
	}},
	"messageRepo.deadLetter": {run: func(e *repoEnv) {
		h := e.settleContract(e.s.messages.deadLetter("poison"))
		e.equal("live", e.live(h.q, h.m1, h.m2), []int64{h.m2})
		m := e.getArchived(h.q, h.m1)
		if !m.Dead || m.LastError != "poison" || m.ReadCount != 1 {
			e.t.Errorf("dead letter = %+v", m)
		}
	}},
	"messageRepo.exhaust": {run: func(e *repoEnv) {
		h := e.settleContract(e.s.messages.exhaust("out of attempts"))
		m := e.getArchived(h.q, h.m1)
		if !m.Dead || m.LastError != "out of attempts" || m.ReadCount != 0 {
			e.t.Errorf("exhausted message without a handler error = %+v, want dead, the reason, read count 0", m)
		}
		// With a handler error from an earlier attempt: reason; last error.
		e.settle(e.s.messages.fail(0, "boom"), []int64{h.m2}, h.c1, h.q)
		if got := e.claimIDs(h.q, h.c1, 10); !slices.Equal(got, []int64{h.m2}) {
			e.t.Fatalf("claimed %v, want m2", got)
		}
		e.settle(e.s.messages.exhaust("out of attempts"), []int64{h.m2}, h.c1, h.q)
		m = e.getArchived(h.q, h.m2)
		if !m.Dead || m.LastError != "out of attempts; last handler error: boom" || m.ReadCount != 1 {
			e.t.Errorf("exhausted message after a handler error = %+v", m)
		}
	}},
	"messageRepo.reschedule": {run: func(e *repoEnv) {
		h := e.settleContract(e.s.messages.reschedule(0))
		if m := e.reclaim(h); m.ReadCount != 1 {
			e.t.Errorf("read count after reschedule and claim = %d, want 1 (restored)", m.ReadCount)
		}
		e.settle(e.s.messages.reschedule(time.Hour), []int64{h.m2}, h.c1, h.q)
		e.equal("claimable after a reschedule for an hour", e.claimIDs(h.q, h.c2, 10), []int64{})
		e.equal("live", e.live(h.q, h.m2), []int64{h.m2})
	}},
	"messageRepo.moveToDLQ": {fresh: true, run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		twice, heldTwice, once := e.enqueue(q, `1`), e.enqueue(q, `2`), e.enqueue(q, `3`)
		release := e.s.messages.release(0)
		e.claim(q, c, 3)
		e.settle(release, []int64{twice, heldTwice, once}, c, q)
		if got := e.claimIDs(q, c, 2); !slices.Equal(got, []int64{twice, heldTwice}) {
			e.t.Fatalf("second claim = %v, want [%d %d]", got, twice, heldTwice)
		}
		e.settle(release, []int64{twice}, c, q) // heldTwice stays leased
		ids, err := e.s.messages.moveToDLQ(e.ctx, e.q, 2)
		e.must(err, "moveToDLQ")
		e.equal("moved", ids, []int64{twice})
		m := e.getArchived(q, twice)
		if !m.Dead || m.ReadCount != 2 || m.LastError != "no success in 2 attempts" {
			e.t.Errorf("moved message = %+v", m)
		}
		e.equal("live", e.live(q, twice, once, heldTwice), sorted(once, heldTwice))
		if ids, _ := e.s.messages.moveToDLQ(e.ctx, e.q, 2); len(ids) != 0 {
			e.t.Errorf("second moveToDLQ moved %v", ids)
		}
	}},
	"messageRepo.exists": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c := e.worker("c", q, "consumer")
		held, free, gone := e.enqueue(q, `1`), e.enqueue(q, `2`), e.enqueue(q, `3`)
		e.equal("claimed", e.claimIDs(q, c, 3), []int64{held, free, gone})
		e.settle(e.s.messages.release(0), []int64{free}, c, q)
		e.archived(q, c, gone, false)
		for _, tc := range []struct {
			id   int64
			q    *Queue
			want bool
		}{{held, q, true}, {free, q, true}, {held, other, false}, {gone, q, false}, {gone + 1000, q, false}} {
			ok, err := e.s.messages.exists(e.ctx, e.q, tc.id, tc.q.ID)
			e.must(err, "exists")
			e.equal(fmt.Sprintf("exists(%d, %s)", tc.id, tc.q.Name), ok, tc.want)
		}
	}},
	"messageRepo.drop": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		free, held := e.enqueue(q, `1`), e.enqueue(q, `2`)
		if ids := e.claimIDs(q, c, 1); len(ids) != 1 || ids[0] != free {
			e.t.Fatalf("claimed %v, want [%d]", ids, free)
		}
		// free is now the held one; held (the second) is free.
		ok, err := e.s.messages.drop(e.ctx, e.q, held)
		if err != nil || !ok {
			e.t.Errorf("drop of an unclaimed message = %v, %v", ok, err)
		}
		ok, err = e.s.messages.drop(e.ctx, e.q, free)
		if err != nil || ok {
			e.t.Errorf("drop of a held message = %v, %v, want false", ok, err)
		}
		e.equal("live after the drops", e.live(q, free, held), []int64{free})
	}},
	"messageRepo.holders": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		c := e.worker("c", q, "consumer")
		a, b, gone := e.enqueue(q, `1`), e.enqueue(q, `2`), e.enqueue(q, `3`)
		o := e.enqueue(other, `4`)
		e.claim(q, c, 3)
		e.archived(q, c, gone, false)
		free := e.enqueue(q, `5`)
		e.equal("live", e.live(q, a, gone, o, gone+1000, b, free), sorted(a, b, free))
		e.equal("live of none", e.live(q), []int64{})
		holders, err := e.s.messages.holders(e.ctx, e.q, []int64{a, free}, q.ID)
		e.must(err, "holders")
		e.equal("holders", holders, map[int64]int64{a: c, free: 0})
	}},
	"messageRepo.explainDequeue": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		// Enough of a backlog that a planner with fresh statistics (the
		// conformance tables are small, and autovacuum may analyze them at
		// any time: here it surely has) prefers the index to the table.
		payloads := make([]string, 2000)
		for i := range payloads {
			payloads[i] = `1`
		}
		_, err := e.s.messages.enqueueBatch(e.ctx, e.q, q.ID, payloads, outgoing{}, 0)
		e.must(err, "enqueueBatch")
		if e.s.d.name == Postgres {
			_, err := e.q.ExecContext(e.ctx, "ANALYZE "+e.s.d.relation("pgqrs_messages"))
			e.must(err, "analyze")
		}
		lines, err := e.s.messages.explainDequeue(e.ctx, e.q, q, 10, time.Minute, c, nil)
		e.must(err, "explainDequeue")
		if plan := strings.Join(lines, "\n"); !strings.Contains(plan, "pgqrs_messages_claim") {
			e.t.Errorf("the plan does not read the claim index:\n%s", plan)
		}
	}},
	"messageRepo.countHeld": {run: func(e *repoEnv) {
		h := e.held3()
		e.equal("c1", e.held(h.c1), 2)
		e.equal("c2", e.held(h.c2), 1)
		e.equal("unknown", e.held(h.c2+1000), 0)
		e.settle(e.s.messages.extend(0), []int64{h.m1}, h.c1, h.q)
		e.equal("c1 after m1's lease ended", e.held(h.c1), 1)
	}},

	// workerRepo

	"workerRepo.register": {run: func(e *repoEnv) {
		q := e.queue("q")
		id := e.worker("w", q, "consumer")
		w, err := e.s.workers.get(e.ctx, e.q, id)
		e.must(err, "get")
		if w.ID != id || w.Name != e.prefix+"w" || w.Queue != q.Name || w.Role != "consumer" || w.Status != WorkerReady || !w.StoppedAt.IsZero() {
			e.t.Errorf("registered %+v", w)
		}
		e.recent("StartedAt", w.StartedAt)
		_, err = e.s.workers.register(e.ctx, e.q, e.prefix+"w", q.ID, "consumer")
		e.isErr(err, errUnique, "register of a live name")
		e.setStatus(id, WorkerStopped)
		again, err := e.s.workers.register(e.ctx, e.q, e.prefix+"w", q.ID, "consumer")
		e.must(err, "register the name of a stopped worker")
		if again <= id {
			e.t.Errorf("new ID %d, not above %d", again, id)
		}
		_, err = e.s.workers.register(e.ctx, e.q, e.prefix+"x", q.ID+1000, "consumer")
		e.isErr(err, errForeignKey, "register on a missing queue")
	}},
	"workerRepo.heartbeat": {run: func(e *repoEnv) {
		q := e.queue("q")
		id := e.worker("w", q, "consumer")
		w0, _ := e.s.workers.get(e.ctx, e.q, id)
		st, err := e.s.workers.heartbeat(e.ctx, e.q, id)
		e.must(err, "heartbeat")
		e.equal("status", st, WorkerReady)
		w1, _ := e.s.workers.get(e.ctx, e.q, id)
		if w1.HeartbeatAt.Before(w0.HeartbeatAt) {
			e.t.Errorf("heartbeat went back from %v to %v", w0.HeartbeatAt, w1.HeartbeatAt)
		}
		e.setStatus(id, WorkerSuspended)
		st, err = e.s.workers.heartbeat(e.ctx, e.q, id)
		e.must(err, "heartbeat")
		e.equal("status when suspended", st, WorkerSuspended)
		_, err = e.s.workers.heartbeat(e.ctx, e.q, id+1000)
		e.noRows(err, "heartbeat of a missing worker")
	}},
	"workerRepo.producerBeat": {run: func(e *repoEnv) {
		q := e.queue("q")
		p := e.worker("p", q, "producer")
		e.setStatus(p, WorkerStopped)
		st, err := e.s.workers.producerBeat(e.ctx, e.q, p)
		e.must(err, "producerBeat")
		e.equal("status of a producer stopped from outside", st, WorkerReady)
		if w, _ := e.s.workers.get(e.ctx, e.q, p); w.Status != WorkerReady || !w.StoppedAt.IsZero() {
			e.t.Errorf("after producerBeat: %+v", w)
		}
		e.setStatus(p, WorkerSuspended)
		st, err = e.s.workers.producerBeat(e.ctx, e.q, p)
		e.must(err, "producerBeat")
		e.equal("status of a suspended producer", st, WorkerSuspended)
		e.setStatus(p, WorkerStopped)
		e.worker("p", q, "producer") // the name is taken meanwhile
		_, err = e.s.workers.producerBeat(e.ctx, e.q, p)
		e.noRows(err, "producerBeat when the name is taken")
		_, err = e.s.workers.producerBeat(e.ctx, e.q, p+1000)
		e.noRows(err, "producerBeat of a missing worker")
	}},
	"workerRepo.rejoin": {run: func(e *repoEnv) {
		q := e.queue("q")
		p := e.worker("p", q, "producer")
		_, err := e.s.workers.rejoin(e.ctx, e.q, p, e.prefix+"p", q.ID, "producer")
		e.noRows(err, "rejoin of a worker that still exists")
		e.setStatus(p, WorkerStopped)
		if n, _ := e.s.queues.deleteStoppedWorkers(e.ctx, e.q, q.ID); n != 1 {
			e.t.Fatalf("purged %d workers, want 1", n)
		}
		st, err := e.s.workers.rejoin(e.ctx, e.q, p, e.prefix+"p", q.ID, "producer")
		e.must(err, "rejoin")
		e.equal("status", st, WorkerReady)
		w, err := e.s.workers.get(e.ctx, e.q, p)
		e.must(err, "get")
		if w.ID != p || w.Name != e.prefix+"p" || w.Role != "producer" || w.Queue != q.Name {
			e.t.Errorf("rejoined as %+v", w)
		}
	}},
	"workerRepo.status": {run: func(e *repoEnv) {
		q := e.queue("q")
		id := e.worker("w", q, "consumer")
		for _, want := range []WorkerStatus{WorkerReady, WorkerInterrupted, WorkerStopped} {
			if want != WorkerReady {
				e.setStatus(id, want)
			}
			st, err := e.s.workers.status(e.ctx, e.q, id)
			e.must(err, "status")
			e.equal("status", st, want)
		}
		_, err := e.s.workers.status(e.ctx, e.q, id+1000)
		e.noRows(err, "status of a missing worker")
	}},
	"workerRepo.transition": {run: func(e *repoEnv) {
		q := e.queue("q")
		id := e.worker("w", q, "consumer")
		move := func(to WorkerStatus, from ...WorkerStatus) bool {
			ok, err := e.s.workers.transition(e.ctx, e.q, id, to, from)
			e.must(err, "transition")
			return ok
		}
		e.equal("ready → polling", move(WorkerPolling, WorkerReady), true)
		e.equal("ready → polling again", move(WorkerPolling, WorkerReady), false)
		e.equal("from no state", move(WorkerReady), false)
		e.equal("polling → suspended, from any of two", move(WorkerSuspended, WorkerReady, WorkerPolling), true)
		if w, _ := e.s.workers.get(e.ctx, e.q, id); w.Status != WorkerSuspended || !w.StoppedAt.IsZero() {
			e.t.Errorf("after suspend: %+v", w)
		}
		e.equal("suspended → stopped", move(WorkerStopped, WorkerSuspended), true)
		w, _ := e.s.workers.get(e.ctx, e.q, id)
		e.equal("status", w.Status, WorkerStopped)
		e.recent("StoppedAt", w.StoppedAt)
		ok, err := e.s.workers.transition(e.ctx, e.q, id+1000, WorkerReady, []WorkerStatus{WorkerStopped})
		e.must(err, "transition of a missing worker")
		e.equal("missing worker moved", ok, false)
	}},
	"workerRepo.get": {run: func(e *repoEnv) {
		q := e.queue("q")
		id := e.worker("w", q, "producer")
		w, err := e.s.workers.get(e.ctx, e.q, id)
		e.must(err, "get")
		if w.ID != id || w.Name != e.prefix+"w" || w.Queue != q.Name || w.Role != "producer" || w.Status != WorkerReady {
			e.t.Errorf("get = %+v", w)
		}
		e.recent("StartedAt", w.StartedAt)
		e.recent("HeartbeatAt", w.HeartbeatAt)
		if !w.StoppedAt.IsZero() {
			e.t.Errorf("a live worker has StoppedAt %v", w.StoppedAt)
		}
		_, err = e.s.workers.get(e.ctx, e.q, id+1000)
		e.noRows(err, "get of a missing worker")
	}},
	"workerRepo.list": {run: func(e *repoEnv) {
		q1, q2, empty := e.queue("q1"), e.queue("q2"), e.queue("empty")
		w1, w2, w3 := e.worker("w1", q1, "consumer"), e.worker("w2", q2, "producer"), e.worker("w3", q1, "producer")
		ids := func(queueID int64) []int64 {
			ws, err := e.s.workers.list(e.ctx, e.q, queueID)
			e.must(err, "list")
			out := []int64{}
			for _, w := range ws {
				if queueID != 0 || slices.Contains([]int64{w1, w2, w3}, w.ID) {
					out = append(out, w.ID)
				}
			}
			return out
		}
		e.equal("q1", ids(q1.ID), []int64{w1, w3})
		e.equal("all (ours), by ID", ids(0), []int64{w1, w2, w3})
		e.equal("a queue without workers", ids(empty.ID), []int64{})
	}},
	"workerRepo.health": {run: func(e *repoEnv) {
		q := e.queue("q")
		for i, st := range []WorkerStatus{WorkerReady, WorkerPolling, WorkerSuspended, WorkerInterrupted, WorkerStopped} {
			id := e.worker(fmt.Sprint("w", i), q, "consumer")
			if st != WorkerReady {
				e.setStatus(id, st)
			}
		}
		h, err := e.s.workers.health(e.ctx, e.q, q.ID, -time.Hour) // every beat is stale
		e.must(err, "health")
		e.equal("health", h, WorkerHealth{Ready: 1, Polling: 1, Suspended: 1, Interrupted: 1, Stopped: 1, Stale: 3})
		h, err = e.s.workers.health(e.ctx, e.q, q.ID, time.Hour)
		e.must(err, "health")
		e.equal("stale within an hour", h.Stale, 0)
		h, err = e.s.workers.health(e.ctx, e.q, e.queue("other").ID, time.Hour)
		e.must(err, "health")
		e.equal("health of a queue without workers", h, WorkerHealth{})
	}},
	"workerRepo.stopStale": {fresh: true, run: func(e *repoEnv) {
		q := e.queue("q")
		c, p, s := e.worker("c", q, "consumer"), e.worker("p", q, "producer"), e.worker("s", q, "consumer")
		e.setStatus(p, WorkerInterrupted)
		e.setStatus(s, WorkerSuspended)
		ids, err := e.s.workers.stopStale(e.ctx, e.q, time.Hour)
		e.must(err, "stopStale")
		e.equal("stopped within an hour", len(ids), 0)
		ids, err = e.s.workers.stopStale(e.ctx, e.q, -time.Hour)
		e.must(err, "stopStale")
		e.equal("stopped", sorted(ids...), sorted(c, p))
		for id, want := range map[int64]WorkerStatus{c: WorkerStopped, p: WorkerStopped, s: WorkerSuspended} {
			if w, _ := e.s.workers.get(e.ctx, e.q, id); w.Status != want || (want == WorkerStopped && w.StoppedAt.IsZero()) {
				e.t.Errorf("worker %d: %+v, want %s", id, w, want)
			}
		}
	}},
	"workerRepo.anyStaleConsumer": {run: func(e *repoEnv) {
		q, alone := e.queue("q"), e.queue("alone")
		self := e.worker("self", q, "consumer")
		e.worker("p", q, "producer")
		solo := e.worker("solo", alone, "consumer")
		e.worker("solo-p", alone, "producer")
		stale := func(queue *Queue, self int64, after time.Duration) bool {
			ok, err := e.s.workers.anyStaleConsumer(e.ctx, e.q, queue.ID, self, after)
			e.must(err, "anyStaleConsumer")
			return ok
		}
		e.equal("only self and a producer", stale(alone, solo, -time.Hour), false)
		other := e.worker("other", q, "consumer")
		e.equal("another consumer, stale", stale(q, self, -time.Hour), true)
		e.equal("another consumer, fresh", stale(q, self, time.Hour), false)
		e.setStatus(other, WorkerStopped)
		e.equal("another consumer, stopped", stale(q, self, -time.Hour), false)
	}},
	"workerRepo.stopStaleConsumers": {run: func(e *repoEnv) {
		q := e.queue("q")
		self, other := e.worker("self", q, "consumer"), e.worker("other", q, "consumer")
		p := e.worker("p", q, "producer")
		ids, err := e.s.workers.stopStaleConsumers(e.ctx, e.q, q.ID, self, time.Hour)
		e.must(err, "stopStaleConsumers")
		e.equal("stopped within an hour", len(ids), 0)
		ids, err = e.s.workers.stopStaleConsumers(e.ctx, e.q, q.ID, self, -time.Hour)
		e.must(err, "stopStaleConsumers")
		e.equal("stopped", ids, []int64{other})
		for id, want := range map[int64]WorkerStatus{self: WorkerReady, other: WorkerStopped, p: WorkerReady} {
			if st, _ := e.s.workers.status(e.ctx, e.q, id); st != want {
				e.t.Errorf("worker %d is %s, want %s", id, st, want)
			}
		}
		ids, _ = e.s.workers.stopStaleConsumers(e.ctx, e.q, q.ID, self, -time.Hour)
		e.equal("stopped again", len(ids), 0)
	}},
	"workerRepo.release": {run: func(e *repoEnv) {
		h := e.held3()
		n, err := e.s.workers.release(e.ctx, e.q, nil)
		e.must(err, "release of no workers")
		e.equal("released for no workers", n, 0)
		n, err = e.s.workers.release(e.ctx, e.q, []int64{h.c1, h.c1 + 1000})
		e.must(err, "release")
		e.equal("released", n, 2)
		e.equal("c1 holds", e.held(h.c1), 0)
		e.equal("c2 holds", e.held(h.c2), 1)
		msgs := e.claim(h.q, h.c2, 10)
		if len(msgs) != 2 || msgs[0].ID != h.m1 || msgs[0].ReadCount != 2 {
			e.t.Errorf("claim after release = %+v, want m1, m2 with read counts kept", msgs)
		}
	}},
	"workerRepo.releaseHeld": {run: func(e *repoEnv) {
		h := e.held3()
		n, err := e.s.workers.releaseHeld(e.ctx, e.q, h.c1)
		e.must(err, "releaseHeld")
		e.equal("released", n, 2)
		e.equal("c1 holds", e.held(h.c1), 0)
		e.equal("c2 holds", e.held(h.c2), 1)
		e.equal("claimable", e.claimIDs(h.q, h.c2, 10), []int64{h.m1, h.m2})
		n, _ = e.s.workers.releaseHeld(e.ctx, e.q, h.c1)
		e.equal("released again", n, 0)
	}},
	"workerRepo.purge": {fresh: true, run: func(e *repoEnv) {
		q := e.queue("q")
		gone, referenced, live := e.worker("gone", q, "consumer"), e.worker("ref", q, "producer"), e.worker("live", q, "consumer")
		if _, err := e.s.messages.enqueue(e.ctx, e.q, q.ID, []byte(`1`), outgoing{}, referenced); err != nil {
			e.t.Fatal(err)
		}
		e.setStatus(gone, WorkerStopped)
		e.setStatus(referenced, WorkerStopped)
		n, err := e.s.workers.purge(e.ctx, e.q, time.Hour)
		e.must(err, "purge")
		e.equal("purged (stopped an hour ago)", n, 0)
		n, err = e.s.workers.purge(e.ctx, e.q, -time.Hour)
		e.must(err, "purge")
		e.equal("purged", n, 1)
		_, err = e.s.workers.get(e.ctx, e.q, gone)
		e.noRows(err, "get of a purged worker")
		for _, id := range []int64{referenced, live} {
			if _, err := e.s.workers.get(e.ctx, e.q, id); err != nil {
				e.t.Errorf("worker %d: %v", id, err)
			}
		}
	}},

	// runRepo

	"runRepo.insertWorkflow": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		if wf.id <= 0 {
			e.t.Errorf("workflow ID %d", wf.id)
		}
		_, err := e.s.runs.insertWorkflow(e.ctx, e.q, e.prefix+"wf", q.ID)
		e.isErr(err, errUnique, "insert of a taken workflow name")
	}},
	"runRepo.workflowByName": {run: func(e *repoEnv) {
		wf, _ := e.workflow("wf")
		got, err := e.s.runs.workflowByName(e.ctx, e.q, e.prefix+"wf")
		e.must(err, "workflowByName")
		e.equal("ref", got, wf)
		_, err = e.s.runs.workflowByName(e.ctx, e.q, e.prefix+"missing")
		e.noRows(err, "workflowByName of a missing workflow")
	}},
	"runRepo.workflowByQueue": {run: func(e *repoEnv) {
		_, q := e.workflow("wf")
		name, err := e.s.runs.workflowByQueue(e.ctx, e.q, q.ID)
		e.must(err, "workflowByQueue")
		e.equal("name", name, e.prefix+"wf")
		_, err = e.s.runs.workflowByQueue(e.ctx, e.q, e.queue("plain").ID)
		e.noRows(err, "workflowByQueue of a plain queue")
	}},
	"runRepo.insertMany": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		msgs := []int64{e.enqueue(q, `1`), e.enqueue(q, `2`), e.enqueue(q, `3`)}
		inputs := []json.RawMessage{json.RawMessage(`{"a":"x"}`), json.RawMessage(`"text"`), json.RawMessage(`[1,2]`)}
		ids, err := e.s.runs.insertMany(e.ctx, e.q, wf.id, msgs, inputs, time.Hour)
		e.must(err, "insertMany")
		if len(ids) != 3 || !slices.IsSorted(ids) {
			e.t.Fatalf("insertMany = %v, want 3 ascending IDs", ids)
		}
		for i, msg := range msgs {
			row, err := e.s.runs.byMessage(e.ctx, e.q, msg)
			e.must(err, "byMessage")
			if row.id != ids[i] || row.status != RunQueued || !sameJSON(row.input, inputs[i]) || row.deadline.Before(time.Now().Add(59*time.Minute)) {
				e.t.Errorf("run %d = %+v, want id %d, input %s, a deadline in an hour", i, row, ids[i], inputs[i])
			}
		}
		_, err = e.s.runs.insertMany(e.ctx, e.q, wf.id+1000, []int64{e.enqueue(q, `4`)}, inputs[:1], 0)
		e.isErr(err, errForeignKey, "insertMany of runs of a missing workflow")
	}},
	"runRepo.insert": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `{"in": [1]}`)
		id2, _ := e.run(wf, q, `null`)
		if id <= 0 || id2 <= id {
			e.t.Errorf("run IDs %d, %d", id, id2)
		}
		r := e.getRun(id)
		if r.Status != RunQueued || r.Workflow != e.prefix+"wf" || !sameJSON(r.Input, []byte(`{"in":[1]}`)) || !r.StartedAt.IsZero() || !r.FinishedAt.IsZero() {
			e.t.Errorf("inserted run = %+v", r)
		}
		e.recent("CreatedAt", r.CreatedAt)
		if !r.Deadline.IsZero() {
			e.t.Errorf("a run without a timeout has deadline %v", r.Deadline)
		}
		timed, err := e.s.runs.insert(e.ctx, e.q, wf.id, e.enqueue(q, `2`), []byte(`2`), time.Hour, "", 0)
		e.must(err, "insert run with a timeout")
		if d := e.getRun(timed).Deadline; d.Before(time.Now().Add(59*time.Minute)) || d.After(time.Now().Add(61*time.Minute)) {
			e.t.Errorf("a run with a 1h timeout has deadline %v", d)
		}
		_, err = e.s.runs.insert(e.ctx, e.q, wf.id+1000, e.enqueue(q, `1`), []byte(`1`), 0, "", 0)
		e.isErr(err, errForeignKey, "insert of a run of a missing workflow")
		keyed, err := e.s.runs.insert(e.ctx, e.q, wf.id, e.enqueue(q, `3`), []byte(`3`), 0, "order-42", 0)
		e.must(err, "insert a keyed run")
		if r := e.getRun(keyed); r.Key != "order-42" {
			e.t.Errorf("keyed run has key %q", r.Key)
		}
		_, err = e.s.runs.insert(e.ctx, e.q, wf.id, e.enqueue(q, `4`), []byte(`4`), 0, "order-42", 0)
		e.isErr(err, sql.ErrNoRows, "insert of a second run with the key")
		other, _ := e.workflow("other")
		_, err = e.s.runs.insert(e.ctx, e.q, other.id, e.enqueue(q, `5`), []byte(`5`), 0, "order-42", 0)
		e.must(err, "the key of another workflow's run")
	}},
	"runRepo.byKey": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, err := e.s.runs.insert(e.ctx, e.q, wf.id, e.enqueue(q, `1`), []byte(`1`), 0, "k", 0)
		e.must(err, "insert a keyed run")
		got, err := e.s.runs.byKey(e.ctx, e.q, wf.id, "k")
		if err != nil || got != id {
			e.t.Errorf("byKey = %d, %v, want %d", got, err, id)
		}
		_, err = e.s.runs.byKey(e.ctx, e.q, wf.id, "other")
		e.isErr(err, sql.ErrNoRows, "byKey of an unused key")
	}},
	"runRepo.byMessage": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, msg := e.run(wf, q, `[1]`)
		row, err := e.s.runs.byMessage(e.ctx, e.q, msg)
		e.must(err, "byMessage")
		if row.id != id || row.status != RunQueued || row.started || !row.resumeAt.IsZero() || !row.deadline.IsZero() || !sameJSON(row.input, []byte(`[1]`)) {
			e.t.Errorf("byMessage = %+v", row)
		}
		e.recent("dbNow", row.dbNow)
		until := dbMS(time.Now().Add(time.Hour))
		if _, err := e.s.runs.pause(e.ctx, e.q, id, until); err != nil {
			e.t.Fatal(err)
		}
		row, err = e.s.runs.byMessage(e.ctx, e.q, msg)
		e.must(err, "byMessage")
		if row.status != RunPaused || !row.started || !row.resumeAt.Equal(until) {
			e.t.Errorf("byMessage of a paused run = %+v, want resume at %v", row, until)
		}
		_, err = e.s.runs.byMessage(e.ctx, e.q, e.enqueue(q, `1`))
		e.noRows(err, "byMessage of a message without a run")
	}},
	"runRepo.start": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		_, err := e.s.runs.start(e.ctx, e.q, id)
		e.noRows(err, "start of a queued run")
		if _, err := e.s.runs.pause(e.ctx, e.q, id, time.Now().Add(time.Hour)); err != nil {
			e.t.Fatal(err)
		}
		st, err := e.s.runs.start(e.ctx, e.q, id)
		e.must(err, "start")
		e.equal("status", st, RunRunning)
		r := e.getRun(id)
		if r.Status != RunRunning || !r.ResumeAt.IsZero() {
			e.t.Errorf("started run = %+v", r)
		}
		e.recent("StartedAt", r.StartedAt)
		_, err = e.s.runs.start(e.ctx, e.q, id+1000)
		e.noRows(err, "start of a missing run")
	}},
	"runRepo.pause": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		until := dbMS(time.Now().Add(90 * time.Minute))
		st, err := e.s.runs.pause(e.ctx, e.q, id, until)
		e.must(err, "pause")
		e.equal("status", st, RunPaused)
		if r := e.getRun(id); !r.ResumeAt.Equal(until) || r.StartedAt.IsZero() {
			e.t.Errorf("paused run = %+v, want resume at %v", r, until)
		}
		_, err = e.s.runs.pause(e.ctx, e.q, id, time.Time{})
		e.noRows(err, "pause of a paused run")
		id2, _ := e.run(wf, q, `2`)
		e.stepDone(id2, step("a", 1, `1`, 1)) // RUNNING
		st, err = e.s.runs.pause(e.ctx, e.q, id2, time.Time{})
		e.must(err, "pause of a running run")
		e.equal("status", st, RunPaused)
		if r := e.getRun(id2); !r.ResumeAt.IsZero() {
			e.t.Errorf("paused until resumed, but ResumeAt = %v", r.ResumeAt)
		}
		id3, _ := e.run(wf, q, `3`)
		e.end(id3, RunSucceeded)
		_, err = e.s.runs.pause(e.ctx, e.q, id3, time.Time{})
		e.noRows(err, "pause of an ended run")
	}},
	"runRepo.stepDone": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		e.stepStatus(id, e.stepDone(id, step("a", 1, `{"x": 1}`, 2)))
		_, err := e.s.runs.stepDone(e.ctx, e.q, id, step("a", 1, `2`, 3))
		e.noRows(err, "a second success of one step")
		st := e.steps(id)
		if len(st) != 1 || st[0].Name != "a" || st[0].Position != 1 || st[0].Status != "SUCCESS" || st[0].Attempts != 2 || !sameJSON(st[0].Output, []byte(`{"x":1}`)) {
			e.t.Errorf("steps = %+v", st)
		}
		if len(st) == 1 {
			e.recent("UpdatedAt", st[0].UpdatedAt)
		}
		e.must(e.s.runs.setStatus(e.ctx, e.q, id, RunCancelling), "cancel")
		e.equal("status while cancelling", e.stepDone(id, step("b", 2, `1`, 1)), RunCancelling)
		id2, _ := e.run(wf, q, `2`)
		e.end(id2, RunSucceeded)
		_, err = e.s.runs.stepDone(e.ctx, e.q, id2, step("a", 1, `1`, 1))
		e.noRows(err, "a step of an ended run")
	}},
	"runRepo.stepFailed": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		retry := dbMS(time.Now().Add(time.Minute))
		st, err := e.s.runs.stepFailed(e.ctx, e.q, id, "a", 1, "boom", 1, retry)
		e.must(err, "stepFailed")
		e.stepStatus(id, st)
		steps := e.steps(id)
		if len(steps) != 1 || steps[0].Status != "ERROR" || steps[0].Error != "boom" || steps[0].Attempts != 1 || !steps[0].RetryAt.Equal(retry) || steps[0].Output != nil {
			e.t.Errorf("steps = %+v, want a failed with retry at %v", steps, retry)
		}
		_, err = e.s.runs.stepFailed(e.ctx, e.q, id, "a", 1, "boom again", 2, time.Time{})
		e.must(err, "second failure")
		if steps := e.steps(id); len(steps) != 1 || steps[0].Error != "boom again" || steps[0].Attempts != 2 || !steps[0].RetryAt.IsZero() {
			e.t.Errorf("after the last failure: %+v", steps)
		}
		e.equal("success after failures", e.stepDone(id, step("a", 1, `1`, 3)), RunRunning)
		_, err = e.s.runs.stepFailed(e.ctx, e.q, id, "a", 1, "late", 4, time.Time{})
		e.noRows(err, "a failure after the success")
		if steps := e.steps(id); len(steps) != 1 || steps[0].Status != "SUCCESS" || steps[0].Error != "" || !steps[0].RetryAt.IsZero() {
			e.t.Errorf("after success: %+v", steps)
		}
	}},
	"runRepo.finish": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		last := step("last", 1, `"l"`, 1)
		e.must(e.s.runs.finish(e.ctx, e.q, id, runEnd{status: RunSucceeded, output: json.RawMessage(`{"ok": true}`), last: &last}), "finish")
		r := e.getRun(id)
		if r.Status != RunSucceeded || !sameJSON(r.Output, []byte(`{"ok":true}`)) || r.Error != "" {
			e.t.Errorf("finished run = %+v", r)
		}
		e.recent("FinishedAt", r.FinishedAt)
		if st := e.steps(id); len(st) != 1 || st[0].Name != "last" || st[0].Status != "SUCCESS" {
			e.t.Errorf("steps = %+v, want the last step recorded", st)
		}
		text := "late"
		e.must(e.s.runs.finish(e.ctx, e.q, id, runEnd{status: RunFailed, errText: &text}), "finish again")
		e.equal("status after a second finish", e.getRun(id).Status, RunSucceeded)

		failed, _ := e.run(wf, q, `2`)
		e.end(failed, RunFailed)
		if r := e.getRun(failed); r.Error != "failed" || r.Output != nil {
			e.t.Errorf("failed run = %+v", r)
		}

		cancelling, _ := e.run(wf, q, `3`)
		e.must(e.s.runs.setStatus(e.ctx, e.q, cancelling, RunCancelling), "cancel")
		e.must(e.s.runs.finish(e.ctx, e.q, cancelling, runEnd{status: RunSucceeded, output: json.RawMessage(`1`)}), "finish")
		if r := e.getRun(cancelling); r.Status != RunCancelled || r.Output != nil {
			e.t.Errorf("a cancelling run that finished = %+v, want CANCELLED without output", r)
		}

		// Another execution recorded the last step first: this end is not
		// recorded.
		raced, _ := e.run(wf, q, `4`)
		e.stepDone(raced, step("last", 1, `"first"`, 1))
		other := step("last", 1, `"second"`, 1)
		e.must(e.s.runs.finish(e.ctx, e.q, raced, runEnd{status: RunSucceeded, output: json.RawMessage(`1`), last: &other}), "finish")
		e.equal("status of a run whose last step was recorded first", e.getRun(raced).Status, RunRunning)
		if st := e.steps(raced); len(st) != 1 || !sameJSON(st[0].Output, []byte(`"first"`)) {
			e.t.Errorf("steps = %+v, want the first record kept", st)
		}
	}},
	"runRepo.wakeMessage": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		waiting := e.enqueueAfter(q, `1`, time.Hour)
		held := e.enqueue(q, `2`)
		e.claim(q, c, 1)
		e.must(e.s.runs.wakeMessage(e.ctx, e.q, waiting), "wake")
		e.must(e.s.runs.wakeMessage(e.ctx, e.q, held), "wake of a held message")
		e.equal("c holds", e.held(c), 1)
		e.equal("claimable", e.claimIDs(q, c, 10), []int64{waiting})
	}},
	"runRepo.wakeParent": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		parentMsg := e.enqueueAfter(q, `1`, time.Hour)
		parent, err := e.s.runs.insert(e.ctx, e.q, wf.id, parentMsg, []byte(`1`), 0, "", 0)
		e.must(err, "insert parent")
		child, err := e.s.runs.insert(e.ctx, e.q, wf.id, e.enqueue(q, `2`), []byte(`2`), 0, "", parent)
		e.must(err, "insert child")
		if got := e.getRun(child).Parent; got != parent {
			e.t.Errorf("child's parent = %d, want %d", got, parent)
		}
		queueID, err := e.s.runs.wakeParent(e.ctx, e.q, child)
		if err != nil || queueID != q.ID {
			e.t.Errorf("wakeParent = %d, %v, want queue %d", queueID, err, q.ID)
		}
		_, err = e.s.runs.wakeParent(e.ctx, e.q, child) // visible already: nothing waits
		e.isErr(err, sql.ErrNoRows, "wakeParent of a parent that does not wait")
		_, err = e.s.runs.wakeParent(e.ctx, e.q, parent) // no parent
		e.isErr(err, sql.ErrNoRows, "wakeParent of a run without a parent")
		c := e.worker("c", q, "consumer")
		if ids := e.claimIDs(q, c, 10); !slices.Contains(ids, parentMsg) {
			e.t.Errorf("claimed %v, want the woken parent's message %d among them", ids, parentMsg)
		}
	}},
	"runRepo.children": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		parent, _ := e.run(wf, q, `0`)
		a, err := e.s.runs.insert(e.ctx, e.q, wf.id, e.enqueue(q, `1`), []byte(`1`), 0, "", parent)
		e.must(err, "insert child a")
		b, err := e.s.runs.insert(e.ctx, e.q, wf.id, e.enqueue(q, `2`), []byte(`2`), 0, "", parent)
		e.must(err, "insert child b")
		stranger, _ := e.run(wf, q, `3`)
		e.end(a, RunSucceeded)
		got, err := e.s.runs.children(e.ctx, e.q, []int64{a, b, stranger}, parent)
		e.must(err, "children")
		slices.SortFunc(got, func(x, y childOutcome) int { return cmp.Compare(x.ID, y.ID) })
		if len(got) != 2 || got[0].ID != a || got[0].Status != RunSucceeded || got[1].ID != b || got[1].Status != RunQueued {
			e.t.Errorf("children = %+v, want a SUCCESS and b QUEUED, not the stranger", got)
		}
		unfinished, err := e.s.runs.unfinishedChildren(e.ctx, e.q, parent)
		e.must(err, "unfinishedChildren")
		e.equal("unfinished children", unfinished, []int64{b})
		listed, err := e.s.runs.list(e.ctx, e.q, "", "", math.MaxInt64, 100, parent)
		e.must(err, "list of a parent's children")
		if len(listed) != 2 || listed[0].ID != b || listed[1].ID != a {
			e.t.Errorf("list by parent = %+v, want b then a", listed)
		}
	}},
	"runRepo.unfinishedChildren": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		parent, _ := e.run(wf, q, `0`)
		unfinished, err := e.s.runs.unfinishedChildren(e.ctx, e.q, parent)
		e.must(err, "unfinishedChildren")
		e.equal("no children", unfinished, []int64{})
		kids := make([]int64, 3)
		for i := range kids {
			kids[i], err = e.s.runs.insert(e.ctx, e.q, wf.id, e.enqueue(q, `1`), []byte(`1`), 0, "", parent)
			e.must(err, "insert child")
		}
		e.end(kids[1], RunCancelled)
		unfinished, err = e.s.runs.unfinishedChildren(e.ctx, e.q, parent)
		e.must(err, "unfinishedChildren")
		e.equal("unfinished", unfinished, []int64{kids[0], kids[2]})
	}},
	"runRepo.get": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `{"a": 1}`)
		until := dbMS(time.Now().Add(time.Hour))
		if _, err := e.s.runs.pause(e.ctx, e.q, id, until); err != nil {
			e.t.Fatal(err)
		}
		r := e.getRun(id)
		if r.ID != id || r.Workflow != e.prefix+"wf" || r.Status != RunPaused || !r.ResumeAt.Equal(until) || r.Output != nil || r.Error != "" || !r.FinishedAt.IsZero() {
			e.t.Errorf("get = %+v", r)
		}
		for what, at := range map[string]time.Time{"CreatedAt": r.CreatedAt, "StartedAt": r.StartedAt, "UpdatedAt": r.UpdatedAt} {
			e.recent(what, at)
		}
		_, err := e.s.runs.get(e.ctx, e.q, id+1000)
		e.noRows(err, "get of a missing run")
	}},
	"runRepo.list": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		wf2, q2 := e.workflow("wf2")
		r1, _ := e.run(wf, q, `1`)
		r2, _ := e.run(wf, q, `2`)
		e.run(wf2, q2, `"x"`)
		r3, _ := e.run(wf, q, `3`)
		e.end(r2, RunSucceeded)
		list := func(status RunStatus, before int64, limit int) []int64 {
			runs, err := e.s.runs.list(e.ctx, e.q, e.prefix+"wf", status, before, limit, 0)
			e.must(err, "list")
			out := []int64{}
			for _, r := range runs {
				out = append(out, r.ID)
			}
			return out
		}
		e.equal("all, newest first", list("", math.MaxInt64, 10), []int64{r3, r2, r1})
		e.equal("limit 2", list("", math.MaxInt64, 2), []int64{r3, r2})
		e.equal("before r2", list("", r2, 10), []int64{r1})
		e.equal("succeeded", list(RunSucceeded, math.MaxInt64, 10), []int64{r2})
		e.equal("cancelled", list(RunCancelled, math.MaxInt64, 10), []int64{})
		all, err := e.s.runs.list(e.ctx, e.q, "", "", math.MaxInt64, 1000, 0)
		e.must(err, "list of every workflow")
		var ours int
		for _, r := range all {
			if strings.HasPrefix(r.Workflow, e.prefix) {
				ours++
			}
		}
		e.equal("runs of both workflows", ours, 4)
	}},
	"runRepo.steps": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		e.equal("steps of a new run", len(e.steps(id)), 0)
		if e.steps(id) == nil {
			e.t.Errorf("steps of a new run: nil, want an empty slice")
		}
		e.stepDone(id, step("second", 2, `2`, 1))
		e.stepDone(id, step("first", 1, `1`, 1))
		var names []string
		for _, st := range e.steps(id) {
			names = append(names, st.Name)
		}
		e.equal("in position order", names, []string{"first", "second"})
	}},
	"runRepo.markWaited": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		waited := func() bool {
			var w bool
			e.must(e.q.QueryRowContext(e.ctx, e.s.d.qualify(fmt.Sprintf("SELECT waited FROM pgqrs_runs WHERE id = %d", id))).Scan(&w), "read waited")
			return w
		}
		e.equal("waited of a new run", waited(), false)
		e.must(e.s.runs.markWaited(e.ctx, e.q, id), "markWaited")
		e.must(e.s.runs.markWaited(e.ctx, e.q, id), "markWaited again")
		e.equal("waited", waited(), true)
		e.equal("status", e.getRun(id).Status, RunQueued)
		e.must(e.s.runs.markWaited(e.ctx, e.q, id+1000), "markWaited of a missing run")
	}},
	"runRepo.setStatus": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		if _, err := e.s.runs.pause(e.ctx, e.q, id, time.Now().Add(time.Hour)); err != nil {
			e.t.Fatal(err)
		}
		e.must(e.s.runs.setStatus(e.ctx, e.q, id, RunCancelling), "setStatus")
		if r := e.getRun(id); r.Status != RunCancelling || !r.ResumeAt.IsZero() || !r.FinishedAt.IsZero() {
			e.t.Errorf("cancelling run = %+v", r)
		}
		e.must(e.s.runs.setStatus(e.ctx, e.q, id, RunCancelled), "setStatus")
		r := e.getRun(id)
		e.equal("status", r.Status, RunCancelled)
		e.recent("FinishedAt", r.FinishedAt)
		e.noRows(e.s.runs.setStatus(e.ctx, e.q, id+1000, RunCancelled), "setStatus of a missing run")
	}},
	"runRepo.lock": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, msg := e.run(wf, q, `1`)
		st, got, err := e.s.runs.lock(e.ctx, e.q, id)
		e.must(err, "lock")
		if st != RunQueued || got != msg {
			e.t.Errorf("lock = %s, %d; want QUEUED, %d", st, got, msg)
		}
		_, _, err = e.s.runs.lock(e.ctx, e.q, id+1000)
		e.noRows(err, "lock of a missing run")
	}},
	"runRepo.messageHeld": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		m := e.enqueue(q, `1`)
		held := func() bool {
			ok, err := e.s.runs.messageHeld(e.ctx, e.q, m)
			e.must(err, "messageHeld")
			return ok
		}
		e.equal("held before the claim", held(), false)
		e.claim(q, c, 1)
		e.equal("held after the claim", held(), true)
		e.settle(e.s.messages.extend(0), []int64{m}, c, q)
		e.equal("held after the lease ended", held(), false)
		e.claim(q, c, 1)
		e.archived(q, c, m, false)
		_, err := e.s.runs.messageHeld(e.ctx, e.q, m)
		e.noRows(err, "messageHeld of an archived message")
	}},
	"runRepo.deleteFailedSteps": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		e.stepDone(id, step("ok", 1, `1`, 1))
		if _, err := e.s.runs.stepFailed(e.ctx, e.q, id, "bad", 2, "boom", 1, time.Time{}); err != nil {
			e.t.Fatal(err)
		}
		e.must(e.s.runs.deleteFailedSteps(e.ctx, e.q, id), "deleteFailedSteps")
		var names []string
		for _, st := range e.steps(id) {
			names = append(names, st.Name)
		}
		e.equal("steps left", names, []string{"ok"})
	}},
	"runRepo.requeue": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		e.end(id, RunFailed)
		msg := e.enqueue(q, `{}`)
		e.must(e.s.runs.requeue(e.ctx, e.q, id, msg), "requeue")
		r := e.getRun(id)
		if r.Status != RunQueued || r.Error != "" || r.Output != nil || !r.FinishedAt.IsZero() {
			e.t.Errorf("requeued run = %+v", r)
		}
		if row, err := e.s.runs.byMessage(e.ctx, e.q, msg); err != nil || row.id != id {
			e.t.Errorf("byMessage of the new message = %+v, %v", row, err)
		}
		ok, _ := e.run(wf, q, `2`)
		e.end(ok, RunSucceeded)
		e.must(e.s.runs.requeue(e.ctx, e.q, ok, e.enqueue(q, `{}`)), "requeue of a succeeded run")
		e.equal("status of a succeeded run after requeue", e.getRun(ok).Status, RunSucceeded)
	}},
	"runRepo.unfinished": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		count := func() int64 {
			n, err := e.s.runs.unfinished(e.ctx, e.q, wf.id)
			e.must(err, "unfinished")
			return n
		}
		e.equal("no runs", count(), 0)
		e.run(wf, q, `1`)
		paused, _ := e.run(wf, q, `2`)
		if _, err := e.s.runs.pause(e.ctx, e.q, paused, time.Time{}); err != nil {
			e.t.Fatal(err)
		}
		for _, st := range []RunStatus{RunSucceeded, RunFailed} {
			id, _ := e.run(wf, q, `3`)
			e.end(id, st)
		}
		cancelled, _ := e.run(wf, q, `4`)
		e.must(e.s.runs.setStatus(e.ctx, e.q, cancelled, RunCancelled), "cancel")
		e.equal("queued and paused", count(), 2)
	}},
	"runRepo.deleteWorkflow": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		id, _ := e.run(wf, q, `1`)
		e.stepDone(id, step("a", 1, `1`, 1))
		keep, kq := e.workflow("keep")
		kept, _ := e.run(keep, kq, `1`)
		e.must(e.s.runs.deleteWorkflow(e.ctx, e.q, wf.id), "deleteWorkflow")
		_, err := e.s.runs.workflowByName(e.ctx, e.q, e.prefix+"wf")
		e.noRows(err, "workflowByName after delete")
		_, err = e.s.runs.get(e.ctx, e.q, id)
		e.noRows(err, "get of a deleted workflow's run")
		e.equal("steps of a deleted run", len(e.steps(id)), 0)
		e.equal("the other workflow's run", e.getRun(kept).Status, RunQueued)
	}},
	"runRepo.purge": {run: func(e *repoEnv) {
		wf, q := e.workflow("wf")
		ended, _ := e.run(wf, q, `1`)
		e.end(ended, RunSucceeded)
		open, _ := e.run(wf, q, `2`)
		purge := func(before time.Time) int64 {
			n, err := e.s.runs.purge(e.ctx, e.q, wf.id, before)
			e.must(err, "purge")
			return n
		}
		e.equal("purged (ended before an hour ago)", purge(time.Now().Add(-time.Hour)), 0)
		e.equal("purged (ended before in an hour)", purge(time.Now().Add(time.Hour)), 1)
		_, err := e.s.runs.get(e.ctx, e.q, ended)
		e.noRows(err, "get of a purged run")
		e.equal("unended run", e.getRun(open).Status, RunQueued)
	}},
	"runRepo.workflows": {fresh: true, run: func(e *repoEnv) {
		ws, err := e.s.runs.workflows(e.ctx, e.q)
		e.must(err, "workflows")
		e.equal("workflows of none", len(ws), 0)
		b, bq := e.workflow("b")
		e.workflow("a")
		e.run(b, bq, `1`)
		done, _ := e.run(b, bq, `2`)
		e.end(done, RunSucceeded)
		ws, err = e.s.runs.workflows(e.ctx, e.q)
		e.must(err, "workflows")
		if len(ws) != 2 || ws[0].Name != e.prefix+"a" || ws[1].Name != e.prefix+"b" {
			e.t.Fatalf("workflows = %+v, want a then b", ws)
		}
		for _, w := range ws {
			e.recent("CreatedAt", w.CreatedAt)
			if len(w.Runs) != len(runStatuses) {
				e.t.Errorf("%s: counts for %d statuses, want all %d", w.Name, len(w.Runs), len(runStatuses))
			}
		}
		e.equal("b's queued, succeeded, failed", []int64{ws[1].Runs[RunQueued], ws[1].Runs[RunSucceeded], ws[1].Runs[RunFailed]}, []int64{1, 1, 0})
		e.equal("a's queued", ws[0].Runs[RunQueued], 0)
	}},

	// scheduleRepo

	"scheduleRepo.put": {run: func(e *repoEnv) {
		q := e.queue("q")
		t0 := time.Now().UTC().Truncate(time.Second).Add(time.Hour)
		def := scheduleDef{name: e.prefix + "s", cron: "*/5 * * * *", timezone: "Europe/Berlin", queueID: q.ID,
			payload: []byte(`{"a":1}`), headers: []byte(`{"k":"v"}`), priority: 3, next: t0}
		got := e.putSchedule(def)
		if got.Name != def.name || got.Cron != def.cron || got.TimeZone != def.timezone || got.Queue != q.Name || got.Workflow != "" ||
			!sameJSON(got.Payload, def.payload) || got.Priority != 3 || got.Headers["k"] != "v" || got.Paused ||
			!got.NextRunAt.Equal(t0) || !got.LastRunAt.IsZero() {
			e.t.Errorf("put = %+v", got)
		}
		e.recent("CreatedAt", got.CreatedAt)
		// The same timing, a new payload: the next run stays.
		def.payload, def.headers, def.next = []byte(`2`), nil, t0.Add(time.Minute)
		again := e.putSchedule(def)
		if !again.NextRunAt.Equal(t0) || !sameJSON(again.Payload, []byte(`2`)) || again.Headers != nil {
			e.t.Errorf("put of the same timing = %+v", again)
		}
		// Paused stays paused; a new cron takes the new next run.
		if ok, err := e.s.schedules.pause(e.ctx, e.q, def.name); err != nil || !ok {
			e.t.Fatalf("pause = %v, %v", ok, err)
		}
		def.cron = "*/10 * * * *"
		retimed := e.putSchedule(def)
		if !retimed.NextRunAt.Equal(t0.Add(time.Minute)) || !retimed.Paused || retimed.Cron != def.cron {
			e.t.Errorf("put of a new cron = %+v", retimed)
		}
		def.timezone, def.next = "UTC", t0.Add(2*time.Minute)
		if rezoned := e.putSchedule(def); !rezoned.NextRunAt.Equal(t0.Add(2 * time.Minute)) {
			e.t.Errorf("put of a new zone: next %v", rezoned.NextRunAt)
		}
		wf, wq := e.workflow("wf")
		w := e.putSchedule(scheduleDef{name: e.prefix + "w", cron: "@daily", timezone: "UTC", queueID: wq.ID, workflowID: wf.id,
			payload: []byte(`null`), next: t0})
		if w.Workflow != e.prefix+"wf" || w.Queue != "" || string(w.Payload) != "null" {
			e.t.Errorf("put of a workflow target = %+v", w)
		}
		_, err := e.s.schedules.put(e.ctx, e.q, scheduleDef{name: e.prefix + "x", cron: "@daily", timezone: "UTC",
			queueID: q.ID + 100000, payload: []byte(`1`), next: t0})
		e.isErr(err, errForeignKey, "put with a missing queue")
	}},
	"scheduleRepo.get": {run: func(e *repoEnv) {
		q := e.queue("q")
		put := e.putSchedule(scheduleDef{name: e.prefix + "s", cron: "@hourly", timezone: "UTC", queueID: q.ID,
			payload: []byte(`[1]`), next: time.Now().UTC().Truncate(time.Hour)})
		got, err := e.s.schedules.get(e.ctx, e.q, e.prefix+"s")
		e.must(err, "get")
		e.equal("get", *got, *put)
		_, err = e.s.schedules.get(e.ctx, e.q, e.prefix+"missing")
		e.noRows(err, "get of a missing schedule")
	}},
	"scheduleRepo.list": {fresh: true, run: func(e *repoEnv) {
		q := e.queue("q")
		now := time.Now().UTC().Truncate(time.Second)
		for _, name := range []string{"b", "a", "c"} {
			e.putSchedule(scheduleDef{name: name, cron: "@daily", timezone: "UTC", queueID: q.ID, payload: []byte(`1`), next: now})
		}
		got, err := e.s.schedules.list(e.ctx, e.q)
		e.must(err, "list")
		names := []string{}
		for _, s := range got {
			names = append(names, s.Name)
		}
		e.equal("names", names, []string{"a", "b", "c"})
	}},
	"scheduleRepo.due": {fresh: true, run: func(e *repoEnv) {
		q := e.queue("q")
		t0 := time.Now().UTC().Truncate(time.Second)
		for i, name := range []string{"late", "soon", "paused", "first"} {
			e.putSchedule(scheduleDef{name: name, cron: "@daily", timezone: "UTC", queueID: q.ID, payload: []byte(`1`),
				next: t0.Add([]time.Duration{time.Hour, time.Minute, 0, -time.Minute}[i])})
		}
		if ok, err := e.s.schedules.pause(e.ctx, e.q, "paused"); err != nil || !ok {
			e.t.Fatalf("pause = %v, %v", ok, err)
		}
		due, err := e.s.schedules.due(e.ctx, e.q, t0.Add(time.Minute), 10)
		e.must(err, "due")
		if len(due) != 2 || due[0].name != "first" || due[1].name != "soon" || !due[0].next.Equal(t0.Add(-time.Minute)) ||
			due[0].cron != "@daily" || due[0].timezone != "UTC" {
			e.t.Errorf("due = %+v", due)
		}
		due, err = e.s.schedules.due(e.ctx, e.q, t0.Add(time.Minute), 1)
		e.must(err, "due")
		e.equal("due with limit 1", len(due), 1)
		due, err = e.s.schedules.due(e.ctx, e.q, t0.Add(-2*time.Minute), 10)
		e.must(err, "due")
		e.equal("due before any", len(due), 0)
	}},
	"scheduleRepo.claim": {run: func(e *repoEnv) {
		q := e.queue("q")
		t0 := time.Now().UTC().Truncate(time.Second)
		e.putSchedule(scheduleDef{name: e.prefix + "s", cron: "@every 1m", timezone: "UTC", queueID: q.ID,
			payload: []byte(`{"n":1}`), headers: []byte(`{"h":"1"}`), priority: 2, next: t0})
		d := dueSchedule{name: e.prefix + "s", cron: "@every 1m", timezone: "UTC", next: t0}
		stale := d
		stale.cron = "@every 2m"
		if _, ok, err := e.s.schedules.claim(e.ctx, e.q, stale, t0.Add(time.Minute), t0); err != nil || ok {
			e.t.Errorf("claim with another cron = %v, %v", ok, err)
		}
		target, ok, err := e.s.schedules.claim(e.ctx, e.q, d, t0.Add(time.Minute), t0)
		if err != nil || !ok || target.queueID != q.ID || target.workflowID != 0 || !sameJSON(target.payload, []byte(`{"n":1}`)) ||
			target.priority != 2 || target.headers["h"] != "1" {
			e.t.Fatalf("claim = %+v, %v, %v", target, ok, err)
		}
		if _, ok, err := e.s.schedules.claim(e.ctx, e.q, d, t0.Add(time.Minute), t0); err != nil || ok {
			e.t.Errorf("second claim of one occurrence = %v, %v", ok, err)
		}
		got := e.getSchedule(d.name)
		if !got.NextRunAt.Equal(t0.Add(time.Minute)) || !got.LastRunAt.Equal(t0) {
			e.t.Errorf("after the claim: next %v, last %v", got.NextRunAt, got.LastRunAt)
		}
		d.next = t0.Add(time.Minute)
		if ok, err := e.s.schedules.pause(e.ctx, e.q, d.name); err != nil || !ok {
			e.t.Fatalf("pause = %v, %v", ok, err)
		}
		if _, ok, err := e.s.schedules.claim(e.ctx, e.q, d, t0.Add(2*time.Minute), d.next); err != nil || ok {
			e.t.Errorf("claim of a paused schedule = %v, %v", ok, err)
		}
		wf, wq := e.workflow("wf")
		e.putSchedule(scheduleDef{name: e.prefix + "w", cron: "@every 1m", timezone: "UTC", queueID: wq.ID, workflowID: wf.id,
			payload: []byte(`1`), next: t0})
		target, ok, err = e.s.schedules.claim(e.ctx, e.q, dueSchedule{name: e.prefix + "w", cron: "@every 1m", timezone: "UTC", next: t0},
			t0.Add(time.Minute), t0)
		if err != nil || !ok || target.workflowID != wf.id || target.queueID != wq.ID {
			e.t.Errorf("claim of a workflow schedule = %+v, %v, %v", target, ok, err)
		}
	}},
	"scheduleRepo.ran": {run: func(e *repoEnv) {
		q := e.queue("q")
		t0 := time.Now().UTC().Truncate(time.Second)
		e.putSchedule(scheduleDef{name: e.prefix + "s", cron: "@daily", timezone: "UTC", queueID: q.ID, payload: []byte(`7`), next: t0.Add(time.Hour)})
		target, err := e.s.schedules.ran(e.ctx, e.q, e.prefix+"s", t0)
		if err != nil || target.queueID != q.ID || !sameJSON(target.payload, []byte(`7`)) {
			e.t.Errorf("ran = %+v, %v", target, err)
		}
		got := e.getSchedule(e.prefix + "s")
		if !got.LastRunAt.Equal(t0) || !got.NextRunAt.Equal(t0.Add(time.Hour)) {
			e.t.Errorf("after ran: last %v, next %v", got.LastRunAt, got.NextRunAt)
		}
		_, err = e.s.schedules.ran(e.ctx, e.q, e.prefix+"missing", t0)
		e.noRows(err, "ran of a missing schedule")
	}},
	"scheduleRepo.pause": {run: func(e *repoEnv) {
		q := e.queue("q")
		e.putSchedule(scheduleDef{name: e.prefix + "s", cron: "@daily", timezone: "UTC", queueID: q.ID, payload: []byte(`1`), next: time.Now()})
		for range 2 {
			if ok, err := e.s.schedules.pause(e.ctx, e.q, e.prefix+"s"); err != nil || !ok {
				e.t.Errorf("pause = %v, %v", ok, err)
			}
		}
		e.equal("paused", e.getSchedule(e.prefix+"s").Paused, true)
		if ok, err := e.s.schedules.pause(e.ctx, e.q, e.prefix+"missing"); err != nil || ok {
			e.t.Errorf("pause of a missing schedule = %v, %v", ok, err)
		}
	}},
	"scheduleRepo.resume": {run: func(e *repoEnv) {
		q := e.queue("q")
		t0 := time.Now().UTC().Truncate(time.Second)
		e.putSchedule(scheduleDef{name: e.prefix + "s", cron: "@daily", timezone: "UTC", queueID: q.ID, payload: []byte(`1`), next: t0})
		// Not paused: the next run stays.
		if ok, err := e.s.schedules.resume(e.ctx, e.q, e.prefix+"s", "@daily", "UTC", t0.Add(time.Hour)); err != nil || !ok {
			e.t.Errorf("resume = %v, %v", ok, err)
		}
		e.equal("next of a running schedule", e.getSchedule(e.prefix+"s").NextRunAt.Equal(t0), true)
		if ok, err := e.s.schedules.pause(e.ctx, e.q, e.prefix+"s"); err != nil || !ok {
			e.t.Fatalf("pause = %v, %v", ok, err)
		}
		if ok, err := e.s.schedules.resume(e.ctx, e.q, e.prefix+"s", "@hourly", "UTC", t0.Add(time.Hour)); err != nil || ok {
			e.t.Errorf("resume under another cron = %v, %v", ok, err)
		}
		if ok, err := e.s.schedules.resume(e.ctx, e.q, e.prefix+"s", "@daily", "UTC", t0.Add(time.Hour)); err != nil || !ok {
			e.t.Errorf("resume = %v, %v", ok, err)
		}
		got := e.getSchedule(e.prefix + "s")
		if got.Paused || !got.NextRunAt.Equal(t0.Add(time.Hour)) {
			e.t.Errorf("resumed = paused %v, next %v", got.Paused, got.NextRunAt)
		}
	}},
	"scheduleRepo.delete": {run: func(e *repoEnv) {
		q := e.queue("q")
		e.putSchedule(scheduleDef{name: e.prefix + "s", cron: "@daily", timezone: "UTC", queueID: q.ID, payload: []byte(`1`), next: time.Now()})
		for i, want := range []bool{true, false} {
			if ok, err := e.s.schedules.delete(e.ctx, e.q, e.prefix+"s"); err != nil || ok != want {
				e.t.Errorf("delete %d = %v, %v", i, ok, err)
			}
		}
		_, err := e.s.schedules.get(e.ctx, e.q, e.prefix+"s")
		e.noRows(err, "get after delete")
	}},

	// schemaRepo

	"schemaRepo.createVersionTable": {run: func(e *repoEnv) {
		before, err := e.s.schema.applied(e.ctx, e.q)
		e.must(err, "applied")
		e.must(e.s.schema.createVersionTable(e.ctx, e.q), "createVersionTable on an installed schema")
		after, err := e.s.schema.applied(e.ctx, e.q)
		e.must(err, "applied")
		e.equal("versions", after, before)
	}},
	"schemaRepo.applied": {fresh: true, run: func(e *repoEnv) {
		ms, err := e.s.d.loadMigrations()
		e.must(err, "migrations")
		var want []int64
		for _, m := range ms {
			want = append(want, int64(m.version))
		}
		got, err := e.s.schema.applied(e.ctx, e.q)
		e.must(err, "applied")
		e.equal("applied", got, want)
	}},
	"schemaRepo.record": {fresh: true, run: func(e *repoEnv) {
		e.must(e.s.schema.record(e.ctx, e.q, 999, "0999_test.sql"), "record")
		got, err := e.s.schema.applied(e.ctx, e.q)
		e.must(err, "applied")
		if len(got) == 0 || got[len(got)-1] != 999 {
			e.t.Errorf("applied = %v, want 999 last", got)
		}
		e.isErr(e.s.schema.record(e.ctx, e.q, 999, "0999_test.sql"), errUnique, "record of a recorded version")
	}},
	"schemaRepo.tableExists": {run: func(e *repoEnv) {
		for _, name := range []string{"pgqrs_queues", "pgqrs_messages", "pgqrs_archive", "pgqrs_workers", "pgqrs_workflows", "pgqrs_runs", "pgqrs_steps", "pgqrs_schema_version"} {
			ok, err := e.s.schema.tableExists(e.ctx, e.q, name)
			e.must(err, "tableExists")
			e.equal("tableExists("+name+")", ok, true)
		}
		ok, err := e.s.schema.tableExists(e.ctx, e.q, "pgqrs_nope")
		e.must(err, "tableExists")
		e.equal("tableExists(pgqrs_nope)", ok, false)
	}},
	"schemaRepo.indexExists": {run: func(e *repoEnv) {
		if len(e.s.d.indexes) == 0 {
			e.t.Fatal("the dialect expects no indexes")
		}
		for _, name := range e.s.d.indexes {
			ok, err := e.s.schema.indexExists(e.ctx, e.q, name)
			e.must(err, "indexExists")
			e.equal("indexExists("+name+")", ok, true)
		}
		ok, err := e.s.schema.indexExists(e.ctx, e.q, "pgqrs_nope_idx")
		e.must(err, "indexExists")
		e.equal("indexExists(pgqrs_nope_idx)", ok, false)
	}},
	"schemaRepo.triggerEnabled": {run: func(e *repoEnv) {
		triggers := e.s.d.triggers
		if e.s.d.name != Postgres { // SQLite's triggers are checked with the indexes
			triggers = []tableTrigger{{"pgqrs_group_park", "pgqrs_messages"}}
		}
		if len(triggers) == 0 {
			e.t.Fatal("the dialect expects no triggers")
		}
		for _, tr := range triggers {
			ok, err := e.s.schema.triggerEnabled(e.ctx, e.q, tr)
			e.must(err, "triggerEnabled")
			e.equal("triggerEnabled("+tr.name+")", ok, true)
			// The same name on another table is another trigger.
			ok, err = e.s.schema.triggerEnabled(e.ctx, e.q, tableTrigger{tr.name, "pgqrs_queues"})
			e.must(err, "triggerEnabled")
			e.equal("triggerEnabled("+tr.name+" on pgqrs_queues)", ok, false)
		}
		ok, err := e.s.schema.triggerEnabled(e.ctx, e.q, tableTrigger{"pgqrs_nope", "pgqrs_messages"})
		e.must(err, "triggerEnabled")
		e.equal("triggerEnabled(pgqrs_nope)", ok, false)
		if e.s.d.name == Postgres { // a disabled trigger does not count
			tr := triggers[0]
			alter := func(how string) {
				_, err := e.q.ExecContext(e.ctx, "ALTER TABLE "+e.s.d.relation(tr.table)+" "+how+" TRIGGER "+tr.name)
				e.must(err, how)
			}
			alter("DISABLE")
			ok, err = e.s.schema.triggerEnabled(e.ctx, e.q, tr)
			alter("ENABLE")
			e.must(err, "triggerEnabled")
			e.equal("triggerEnabled("+tr.name+") disabled", ok, false)
		}
	}},
	"schemaRepo.orphans": {fresh: true, run: func(e *repoEnv) {
		count := func() int64 {
			n, err := e.s.schema.orphans(e.ctx, e.q)
			e.must(err, "orphans")
			return n
		}
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		m := e.enqueue(q, `1`)
		e.claim(q, c, 1)
		e.archived(q, c, m, false)
		e.equal("orphans of a sound database", count(), 0)
		// Postgres's archive table keeps no foreign key to its queue:
		// deleting the queue row by itself leaves an orphan. SQLite and
		// Turso archive in place, under the messages' foreign key: the
		// delete is refused and nothing is orphaned.
		e.setStatus(c, WorkerStopped)
		if _, err := e.s.queues.deleteStoppedWorkers(e.ctx, e.q, q.ID); err != nil {
			e.t.Fatal(err)
		}
		_, err := e.s.queues.deleteByID(e.ctx, e.q, q.ID)
		switch {
		case err == nil:
			e.equal("orphans after deleting the queue row", count(), 1)
		case e.s.d.isForeignKey(err) && e.s.Dialect() != Postgres:
			e.equal("orphans after a refused delete of the queue row", count(), 0)
		default:
			e.t.Fatal(err)
		}
	}},
}
