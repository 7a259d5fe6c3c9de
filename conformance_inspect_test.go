package pgqrs

import (
	"fmt"
	"math"
	"time"
)

// Conformance cases of the dashboard reads (inspect.go).
func init() {
	repoCases["messageRepo.list"] = repoCase{run: func(e *repoEnv) {
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
	}}
	repoCases["statsRepo.throughput"] = repoCase{run: func(e *repoEnv) {
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
	}}
}
