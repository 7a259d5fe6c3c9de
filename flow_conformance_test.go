package pgqrs

import (
	"maps"
	"time"
)

// The conformance cases of flowRepo (see conformance_test.go); they join
// repoCases before any test runs.
func init() { maps.Copy(repoCases, flowRepoCases) }

func (e *repoEnv) setLimits(q *Queue, l Limits) {
	e.t.Helper()
	e.must(e.s.flows.set(e.ctx, e.q, q.ID, l), "set limits")
}

func (e *repoEnv) flowLock(q *Queue) flowState {
	e.t.Helper()
	st, err := e.s.flows.lock(e.ctx, e.q, q.ID)
	e.must(err, "lock")
	return st
}

func (e *repoEnv) flowClaim(q *Queue, consumer int64, n, maxInFlight int) []int64 {
	e.t.Helper()
	msgs, err := e.s.flows.claim(e.ctx, e.q, q, n, time.Hour, consumer, maxInFlight, e.flowLock(q).now)
	e.must(err, "limited claim")
	return msgIDs(msgs)
}

func (e *repoEnv) enqueueGroup(q *Queue, group string) int64 {
	e.t.Helper()
	id, err := e.s.messages.enqueue(e.ctx, e.q, q.ID, []byte(`{}`), outgoing{group: group}, 0)
	e.must(err, "enqueue")
	return id
}

var flowRepoCases = map[string]repoCase{
	"flowRepo.set": {run: func(e *repoEnv) {
		q, other := e.queue("q"), e.queue("other")
		want := Limits{MaxInFlight: 3, PerGroup: 2, Rate: 100, RatePeriod: 1500 * time.Millisecond}
		e.setLimits(q, want)
		st := e.flowLock(q)
		e.equal("limits read back", st.limits, want)
		e.equal("limited", st.hasLimited, true)
		e.equal("other queue's limits", e.flowLock(other).limits, Limits{})
		e.setLimits(q, Limits{PerGroup: 4})
		st = e.flowLock(q)
		e.equal("limits replaced", st.limits, Limits{PerGroup: 4})
		e.equal("a per-group limit alone does not limit claims", st.hasLimited, false)
		e.setLimits(q, Limits{})
		e.equal("limits cleared", e.flowLock(q).limits, Limits{})
		e.noRows(e.s.flows.set(e.ctx, e.q, q.ID+1000, want), "set limits of a missing queue")
	}},
	"flowRepo.lock": {run: func(e *repoEnv) {
		q := e.queue("q")
		st := e.flowLock(q)
		e.equal("a new queue's limits", st.limits, Limits{})
		e.equal("a new queue is limited", st.hasLimited, false)
		e.recent("lock time", st.now)
		if !st.windowAt.IsZero() || st.rateCount != 0 {
			e.t.Errorf("a new queue has a rate window: %+v", st)
		}
		_, err := e.s.flows.lock(e.ctx, e.q, q.ID+1000)
		e.noRows(err, "lock of a missing queue")
	}},
	"flowRepo.settings": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		e.setLimits(q, Limits{MaxInFlight: 5})
		for range 3 {
			e.enqueue(q, `1`)
		}
		e.flowClaim(q, c, 2, 5)
		st, err := e.s.flows.settings(e.ctx, e.q, q.ID)
		e.must(err, "settings")
		e.equal("max in flight", st.limits.MaxInFlight, 5)
		e.equal("in flight", st.inFlight, int64(2))
		e.recent("settings time", st.now)
		_, err = e.s.flows.settings(e.ctx, e.q, q.ID+1000)
		e.noRows(err, "settings of a missing queue")
	}},
	"flowRepo.claim": {run: func(e *repoEnv) {
		q := e.queue("q")
		c, d := e.worker("c", q, "consumer"), e.worker("d", q, "consumer")
		e.setLimits(q, Limits{MaxInFlight: 2})
		var ids []int64
		for range 5 {
			ids = append(ids, e.enqueue(q, `1`))
		}
		e.equal("the plain claim on a limited queue", len(e.claim(q, c, 10)), 0)
		e.equal("first limited claim", e.flowClaim(q, c, 10, 2), ids[:2])
		e.equal("claim at the limit, another consumer", len(e.flowClaim(q, d, 10, 2)), 0)
		e.equal("archived", e.settle(e.s.messages.archive, ids[:1], c, q), ids[:1])
		e.equal("claim after an archive", e.flowClaim(q, d, 10, 2), ids[2:3])
		e.equal("released", e.settle(e.s.messages.release(time.Hour), ids[1:2], c, q), ids[1:2])
		e.equal("claim after a release", e.flowClaim(q, d, 10, 2), ids[3:4])
		e.equal("claim with no bound", e.flowClaim(q, d, 10, 0), ids[4:5])
		// A limited lease that expired is not renewed: its slot was free.
		e.settle(e.s.messages.archive, ids[2:5], d, q)
		x := e.enqueue(q, `1`)
		short, err := e.s.flows.claim(e.ctx, e.q, q, 1, 50*time.Millisecond, d, 2, e.flowLock(q).now)
		e.must(err, "short limited claim")
		e.equal("short claim", msgIDs(short), []int64{x})
		await(e.t, 10*time.Second, "the short lease to expire", func() bool {
			st, err := e.s.flows.settings(e.ctx, e.q, q.ID)
			e.must(err, "settings")
			return st.inFlight == 0
		})
		e.equal("extension of an expired limited lease", len(e.settle(e.s.messages.extend(time.Hour), []int64{x}, d, q)), 0)
		e.setStatus(d, WorkerSuspended)
		e.equal("claim by a suspended worker", len(e.flowClaim(q, d, 10, 2)), 0)
	}},
	"flowRepo.count": {run: func(e *repoEnv) {
		q := e.queue("q")
		e.setLimits(q, Limits{Rate: 10, RatePeriod: time.Second})
		window := e.flowLock(q).now.Truncate(time.Second)
		e.must(e.s.flows.count(e.ctx, e.q, q.ID, window, 7), "count")
		st := e.flowLock(q)
		if !st.windowAt.Equal(window) || st.rateCount != 7 {
			e.t.Errorf("window %v count %d, want %v and 7", st.windowAt, st.rateCount, window)
		}
		e.setLimits(q, Limits{Rate: 10, RatePeriod: 2 * time.Second})
		if st := e.flowLock(q); !st.windowAt.IsZero() || st.rateCount != 0 {
			e.t.Errorf("a new period kept the old window: %v, %d", st.windowAt, st.rateCount)
		}
	}},
	"flowRepo.lockGroups": {run: func(e *repoEnv) {
		q := e.queue("q")
		tx, err := e.s.db.BeginTx(e.ctx, nil)
		e.must(err, "begin")
		defer tx.Rollback()
		e.must(e.s.flows.lockGroups(e.ctx, tx, q.ID), "lock groups")
		e.must(e.s.flows.lockGroups(e.ctx, tx, q.ID), "lock groups again in the same transaction")
		e.must(tx.Commit(), "commit")
	}},
	"flowRepo.promote": {run: func(e *repoEnv) {
		q := e.queue("q")
		c := e.worker("c", q, "consumer")
		a1, a2, a3 := e.enqueueGroup(q, "a"), e.enqueueGroup(q, "a"), e.enqueueGroup(q, "a")
		b1 := e.enqueueGroup(q, "b")
		e.equal("claimable at the default limit", e.claimIDs(q, c, 10), []int64{a1, b1})
		e.setLimits(q, Limits{PerGroup: 3})
		e.equal("claimable before the promote", len(e.claim(q, c, 10)), 0)
		n, err := e.s.flows.promote(e.ctx, e.q, q.ID)
		e.must(err, "promote")
		e.equal("promoted", n, int64(2))
		e.equal("claimable after the promote", e.claimIDs(q, c, 10), []int64{a2, a3})
		n, err = e.s.flows.promote(e.ctx, e.q, q.ID)
		e.must(err, "promote again")
		e.equal("promoted again", n, int64(0))
	}},
}
