package pgqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// interval is one handler's execution of a message, on this process's
// clock: a sub-interval of the message's lease (the lease begins at the
// claim, before the handler starts, and ends at the archive, after it
// returns), so leases never overlapping beyond a limit implies handlers
// never do, and handlers overlapping beyond it proves leases did.
type interval struct {
	id         int64
	group      string
	seq        int
	start, end time.Time
}

// recorder collects intervals from handlers on many consumers.
type recorder struct {
	mu  sync.Mutex
	all []interval
}

func (r *recorder) add(iv interval) {
	r.mu.Lock()
	r.all = append(r.all, iv)
	r.mu.Unlock()
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

// maxOverlap is the largest number of intervals that hold at one instant.
func maxOverlap(ivs []interval) int {
	type edge struct {
		at   time.Time
		step int
	}
	var edges []edge
	for _, iv := range ivs {
		edges = append(edges, edge{iv.start, 1}, edge{iv.end, -1})
	}
	// Ends before starts at the same instant: touching is not overlapping.
	slices.SortFunc(edges, func(a, b edge) int {
		if c := a.at.Compare(b.at); c != 0 {
			return c
		}
		return a.step - b.step
	})
	cur, top := 0, 0
	for _, e := range edges {
		cur += e.step
		top = max(top, cur)
	}
	return top
}

// flowPayload is what the flow tests enqueue: a group and a sequence
// number within it.
type flowPayload struct {
	Group string `json:"g"`
	Seq   int    `json:"s"`
}

// recordingHandler records each execution and holds the message for hold,
// so that executions overlap as much as the limits allow.
func recordingHandler(rec *recorder, hold time.Duration) Handler {
	return func(ctx context.Context, m *Message) error {
		var p flowPayload
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			return err
		}
		start := time.Now()
		time.Sleep(hold) // the work: keeps the lease held while others claim
		rec.add(interval{id: m.ID, group: p.Group, seq: p.Seq, start: start, end: time.Now()})
		return nil
	}
}

// runConsumers starts one Run loop per store on queue and returns a stop
// function that ends them all and fails the test on an error.
func runConsumers(t *testing.T, stores []*Store, queue string, h Handler, o RunOptions) (stop func()) {
	t.Helper()
	var stops []func() error
	for i, s := range stores {
		c, err := s.Consumer(t.Context(), queue, WithWorkerName(fmt.Sprintf("%s-%d", queue, i)))
		if err != nil {
			t.Fatal(err)
		}
		oo := o
		stops = append(stops, runInBackground(t, c, h, &oo))
	}
	return func() {
		for _, stop := range stops {
			if err := stop(); err != nil {
				t.Errorf("run: %v", err)
			}
		}
	}
}

// TestFlowMaxInFlight: consumers on separate pools, with more handlers
// than the limit, drain a queue limited to 5 in flight; no instant ever
// has more than 5 executions, and the limit is reached (it bounds, not
// serialises).
func TestFlowMaxInFlight(t *testing.T) {
	const limit, total = 5, 200
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			stores := separateStores(t, b, 3)
			ctx := t.Context()
			p, _ := fixture(t, stores[0], "limited")
			if err := stores[0].Admin().SetLimits(ctx, "limited", Limits{MaxInFlight: limit}); err != nil {
				t.Fatal(err)
			}
			payloads := make([]any, total)
			for i := range payloads {
				payloads[i] = flowPayload{Seq: i}
			}
			if _, err := p.EnqueueBatch(ctx, payloads); err != nil {
				t.Fatal(err)
			}
			rec := &recorder{}
			stop := runConsumers(t, stores, "limited", recordingHandler(rec, 5*time.Millisecond),
				RunOptions{Concurrency: 4, BatchSize: 3, PollInterval: 50 * time.Millisecond})
			await(t, 120*time.Second, "the drain", func() bool { return rec.count() == total })
			stop()
			if got := maxOverlap(rec.all); got > limit || got < 2 {
				t.Fatalf("at most %d executions overlapped; want 2 to %d", got, limit)
			}
			if m := metrics(t, stores[0], "limited"); m.Archived != total {
				t.Fatalf("archived %d, want %d", m.Archived, total)
			}
			ql, err := stores[0].Admin().Limits(ctx, "limited")
			if err != nil {
				t.Fatal(err)
			}
			if ql.MaxInFlight != limit || ql.InFlight != 0 {
				t.Fatalf("limits after the drain: %+v", ql)
			}
		})
	}
}

// enqueueGroups enqueues groups × per messages, interleaved across groups
// (message s of every group, then s+1), in batches, each with its group.
func enqueueGroups(t *testing.T, p *Producer, groups, per int) {
	t.Helper()
	var jobs []Job
	flush := func() {
		if _, err := p.EnqueueJobs(t.Context(), jobs); err != nil {
			t.Fatal(err)
		}
		jobs = jobs[:0]
	}
	for s := range per {
		for g := range groups {
			name := fmt.Sprintf("g%d", g)
			jobs = append(jobs, Job{Payload: flowPayload{Group: name, Seq: s}, Options: []EnqueueOption{Group(name)}})
			if len(jobs) == 100 {
				flush()
			}
		}
	}
	if len(jobs) > 0 {
		flush()
	}
}

// TestFlowGroupsInOrder: with the default per-group limit of 1, consumers
// on separate pools never run two messages of one group at once, and each
// group's messages run and complete in enqueue order, while groups run in
// parallel.
func TestFlowGroupsInOrder(t *testing.T) {
	const groups, per = 20, 8
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			stores := separateStores(t, b, 3)
			p, _ := fixture(t, stores[0], "grouped")
			enqueueGroups(t, p, groups, per)
			rec := &recorder{}
			stop := runConsumers(t, stores, "grouped", recordingHandler(rec, 2*time.Millisecond),
				RunOptions{Concurrency: 4, BatchSize: 4, PollInterval: 50 * time.Millisecond})
			await(t, 120*time.Second, "the drain", func() bool { return rec.count() == groups*per })
			stop()
			byGroup := map[string][]interval{}
			for _, iv := range rec.all {
				byGroup[iv.group] = append(byGroup[iv.group], iv)
			}
			for g, ivs := range byGroup {
				if n := maxOverlap(ivs); n != 1 {
					t.Errorf("group %s: %d executions overlapped", g, n)
				}
				slices.SortFunc(ivs, func(a, b interval) int { return a.end.Compare(b.end) })
				for i, iv := range ivs {
					if iv.seq != i {
						t.Fatalf("group %s completed out of order: %v", g, seqs(ivs))
					}
				}
			}
			if len(byGroup) != groups {
				t.Fatalf("%d groups ran, want %d", len(byGroup), groups)
			}
			if n := maxOverlap(rec.all); n < 2 {
				t.Fatalf("groups did not run in parallel: at most %d at once", n)
			}
		})
	}
}

func seqs(ivs []interval) []int {
	out := make([]int, len(ivs))
	for i, iv := range ivs {
		out[i] = iv.seq
	}
	return out
}

// TestFlowPerGroupLimit: a per-group limit of 2 lets two messages of a
// group be claimed at once, never three; raising it to 3 at run time makes
// a third claimable at once.
func TestFlowPerGroupLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "pergroup")
		if err := s.Admin().SetLimits(ctx, "pergroup", Limits{PerGroup: 2}); err != nil {
			t.Fatal(err)
		}
		for i := range 5 {
			mustEnqueue(t, p, flowPayload{Group: "a", Seq: i}, Group("a"))
		}
		got := mustDequeue(t, c, 10)
		if len(got) != 2 {
			t.Fatalf("claimed %d of group a, want 2", len(got))
		}
		if err := s.Admin().SetLimits(ctx, "pergroup", Limits{PerGroup: 3}); err != nil {
			t.Fatal(err)
		}
		more := mustDequeue(t, c, 10)
		if len(more) != 1 || more[0].ID <= got[1].ID {
			t.Fatalf("after raising the limit claimed %v, want the third message", more)
		}
		if err := c.Archive(ctx, got[0].ID); err != nil {
			t.Fatal(err)
		}
		next := mustDequeue(t, c, 10)
		if len(next) != 1 || next[0].ID <= more[0].ID {
			t.Fatalf("after an archive claimed %v, want the fourth message", next)
		}
	})
}

// TestFlowGroupResumesAfterCrash: a holder of a group's head that stops
// settling (crashed) holds the group back; the group resumes with the same
// message when the lease expires, and at once when the holder is stopped
// (reclaimed).
func TestFlowGroupResumesAfterCrash(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, crashed := fixture(t, s, "crashgroup")
		first := mustEnqueue(t, p, flowPayload{Group: "a", Seq: 0}, Group("a"))
		second := mustEnqueue(t, p, flowPayload{Group: "a", Seq: 1}, Group("a"))
		other := mustEnqueue(t, p, flowPayload{Group: "b", Seq: 0}, Group("b"))
		got := mustDequeue(t, crashed, 10, VisibilityTimeout(300*time.Millisecond))
		if ids := msgIDs(got); !slices.Equal(ids, []int64{first, other}) {
			t.Fatalf("claimed %v, want the heads %v", ids, []int64{first, other})
		}
		live, err := s.Consumer(ctx, "crashgroup")
		if err != nil {
			t.Fatal(err)
		}
		if err := live.Archive(ctx, other); !errors.Is(err, ErrLeaseLost) && err != nil {
			t.Fatal(err)
		}
		// While the lease holds, group a has nothing to give.
		if more := mustDequeue(t, live, 10); len(more) != 0 {
			t.Fatalf("claimed %v while the head's lease held", msgIDs(more))
		}
		// Expiry: the head comes back, not the second message.
		again := awaitDequeue(t, live, 10, 30*time.Second)
		if ids := msgIDs(again); !slices.Contains(ids, first) || slices.Contains(ids, second) {
			t.Fatalf("after the lease expired claimed %v, want %d and not %d", ids, first, second)
		}
		if err := live.Archive(ctx, first); err != nil {
			t.Fatal(err)
		}
		// The next message of the group is claimed by a holder that then
		// crashes; stopping it (a reclaim) releases the group at once.
		next := mustDequeue(t, crashed, 10)
		if ids := msgIDs(next); !slices.Equal(ids, []int64{second}) {
			t.Fatalf("claimed %v, want %d", ids, second)
		}
		if _, err := s.Admin().StopWorker(ctx, crashed.ID()); err != nil {
			t.Fatal(err)
		}
		back := mustDequeue(t, live, 10)
		if ids := msgIDs(back); !slices.Equal(ids, []int64{second}) {
			t.Fatalf("after the reclaim claimed %v, want %d", ids, second)
		}
	})
}

// TestFlowRateLimit: consumers on separate pools under more demand than the
// limit claim at most 40 messages in each 500 ms window of the database
// clock, and at least 36 (within 10%) in each of 10 consecutive windows.
func TestFlowRateLimit(t *testing.T) {
	const rate, period, windows = 40, 500 * time.Millisecond, 10
	const vt = 30 * time.Second
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			stores := separateStores(t, b, 3)
			ctx := t.Context()
			p, _ := fixture(t, stores[0], "rated")
			if err := stores[0].Admin().SetLimits(ctx, "rated", Limits{Rate: rate, RatePeriod: period}); err != nil {
				t.Fatal(err)
			}
			payloads := make([]any, rate*(windows+6))
			for i := range payloads {
				payloads[i] = flowPayload{Seq: i}
			}
			if _, err := p.EnqueueBatch(ctx, payloads); err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var claimedAt []time.Time // the database's time of each claim
			h := func(ctx context.Context, m *Message) error {
				mu.Lock()
				claimedAt = append(claimedAt, m.VisibleAt.Add(-vt))
				mu.Unlock()
				return nil
			}
			stop := runConsumers(t, stores, "rated", h,
				RunOptions{Concurrency: 8, BatchSize: 20, VisibilityTimeout: vt, PollInterval: time.Second})
			await(t, 60*time.Second, "the drain", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(claimedAt) == len(payloads)
			})
			stop()
			perWindow := map[time.Time]int{}
			for _, at := range claimedAt {
				perWindow[at.Truncate(period)]++
			}
			starts := make([]time.Time, 0, len(perWindow))
			for w, n := range perWindow {
				if n > rate {
					t.Errorf("window %v: %d claims, limit %d", w.Format(time.StampMilli), n, rate)
				}
				starts = append(starts, w)
			}
			slices.SortFunc(starts, time.Time.Compare)
			// Ten consecutive windows after the first (which the loops may
			// have entered late), all under demand.
			var counts []string
			for i := 1; i <= windows; i++ {
				w := starts[0].Add(time.Duration(i) * period)
				n := perWindow[w]
				counts = append(counts, fmt.Sprint(n))
				if n < rate*9/10 {
					t.Errorf("window %d (%v): %d claims, want at least %d under demand", i, w.Format(time.StampMilli), n, rate*9/10)
				}
			}
			t.Logf("claims per window: %s", strings.Join(counts, " "))
		})
	}
}

// TestFlowWorkflowRuns: a workflow's runs take the flow control of its
// queue: runs triggered with one Group run one at a time in trigger order,
// and a max-in-flight of 1 on the workflow's queue keeps Serve to one run
// at a time, although Serve runs 4 handlers.
func TestFlowWorkflowRuns(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		rec := &recorder{}
		wf := NewWorkflow("flowed", func(ctx context.Context, run *Run, in flowPayload) (int, error) {
			start := time.Now()
			time.Sleep(5 * time.Millisecond) // the work: keeps the run's message leased
			rec.add(interval{group: in.Group, seq: in.Seq, start: start, end: time.Now()})
			return in.Seq, nil
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for i := range 4 {
			id, err := wf.Trigger(ctx, s, flowPayload{Group: "a", Seq: i}, Group("a"))
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		for i := range 4 {
			id, err := wf.Trigger(ctx, s, flowPayload{Group: fmt.Sprint("solo", i), Seq: 0})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := s.Admin().SetLimits(ctx, "flowed", Limits{MaxInFlight: 1}); err != nil {
			t.Fatal(err)
		}
		serveInBackground(t, s, wf, fastPoll)
		for _, id := range ids {
			if _, err := waitResult(t, s, wf, id); err != nil {
				t.Fatal(err)
			}
		}
		if n := maxOverlap(rec.all); n != 1 {
			t.Fatalf("%d runs overlapped under max-in-flight 1", n)
		}
		var a []int
		slices.SortFunc(rec.all, func(x, y interval) int { return x.start.Compare(y.start) })
		for _, iv := range rec.all {
			if iv.group == "a" {
				a = append(a, iv.seq)
			}
		}
		if !slices.Equal(a, []int{0, 1, 2, 3}) {
			t.Fatalf("group a ran in the order %v", a)
		}
	})
}
