package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// drain-steady (issue 18's flat cost at 10M): producers keep --backlog
// messages waiting while the largest --consumers consumers, each looping
// Dequeue(largest --batch) → ArchiveBatch, drain --messages messages (default
// ten times the backlog); the row reports the rate of each tenth of the drain
// and, from Consumer.ExplainDequeue, the claim's plan at the start and at the
// end (on Postgres with its buffers, and the claim index pages read at each
// tenth). Flat cost means the last tenth drains as fast as the first.
// ("pgqrs bench --backend postgres --scenario drain-steady --backlog 1000000
// --messages 10000000" is the issue's run; docs/benchmarks.md.)

// steadyProducers is how many producers keep the backlog topped up.
const steadyProducers = 2

func (b *bencher) drainSteady(ctx context.Context, consumers, batch []int) (*Result, error) {
	cons, size := slices.Max(consumers), slices.Max(batch)
	backlog := b.flags.backlog
	total := b.flags.messages
	if total == 0 {
		total = 10 * backlog
	}
	label := fmt.Sprintf("drain-steady %d×%d", cons, size)
	queue, fillTime, err := b.prefilled(ctx, label, "steady", backlog, 1)
	if err != nil {
		return nil, err
	}
	if err := b.vacuum(ctx, "pgqrs_messages"); err != nil {
		return nil, err
	}
	probe, err := b.s.Consumer(ctx, queue)
	if err != nil {
		return nil, err
	}
	defer probe.Shutdown(context.WithoutCancel(ctx))
	cs := make([]*pgqrs.Consumer, cons)
	for i := range cs {
		if cs[i], err = b.s.Consumer(ctx, queue); err != nil {
			return nil, err
		}
		defer cs[i].Shutdown(context.WithoutCancel(ctx))
	}
	// The claim as the first consumer makes it (from its floors, once it
	// has claimed), and as a consumer that never claimed makes it: from
	// the start of the range.
	explain := func(when string) (plan string, pages, fromStart int64, err error) {
		lines, err := cs[0].ExplainDequeue(ctx, size)
		if err != nil {
			return "", 0, 0, err
		}
		full, err := probe.ExplainDequeue(ctx, size)
		if err != nil {
			return "", 0, 0, err
		}
		plan, pages, fromStart = strings.Join(lines, "\n"), claimIndexPages(lines), claimIndexPages(full)
		b.logf("%s: claim plan at %s (claim index scan pages %d; from the start of the range %d):\n%s", label, when, pages, fromStart, plan)
		return plan, pages, fromStart, nil
	}
	startPlan, startPages, startFull, err := explain("the start")
	if err != nil {
		return nil, err
	}

	// The producers: each tops the backlog up, 1,000 per EnqueueBatch, while
	// enqueued - archived is below it, until total + backlog are enqueued.
	var enqueued, archived atomic.Int64
	enqueued.Store(int64(backlog))
	pctx, stopProducers := context.WithCancel(ctx)
	defer stopProducers()
	var producers sync.WaitGroup
	prodErr := make(chan error, steadyProducers)
	payloads := make([]any, fillChunk)
	for i := range payloads {
		payloads[i] = jobPayload(i)
	}
	for range steadyProducers {
		p, err := b.s.Producer(ctx, queue)
		if err != nil {
			return nil, err
		}
		defer p.Shutdown(context.WithoutCancel(ctx))
		producers.Go(func() {
			for pctx.Err() == nil {
				if enqueued.Load()-archived.Load() >= int64(backlog) {
					time.Sleep(time.Millisecond)
					continue
				}
				if enqueued.Add(fillChunk) > int64(total+backlog) {
					return
				}
				if _, err := p.EnqueueBatch(pctx, payloads); err != nil {
					if pctx.Err() == nil {
						prodErr <- err
					}
					return
				}
			}
		})
	}

	var tenthsMu sync.Mutex
	var tenths []time.Time
	var tenthPages, tenthFull []int64
	tenth := int64(max(total/10, 1))
	st, err := b.runDrain(ctx, label, drainLoop{
		n: total, consumers: cons, open: true,
		claim: func(ctx context.Context, i int) ([]int64, error) {
			return dequeueIDs(ctx, cs[i], size)
		},
		archive: func(ctx context.Context, i int, ids []int64) (int, error) {
			n, err := archiveCount(ctx, cs[i], ids)
			before := archived.Add(int64(n)) - int64(n)
			after := before + int64(n)
			if before/tenth != after/tenth && after <= int64(total) {
				tenthsMu.Lock()
				tenths = append(tenths, time.Now())
				tenthsMu.Unlock()
				go func() {
					lines, err := cs[0].ExplainDequeue(context.WithoutCancel(ctx), size)
					full, ferr := probe.ExplainDequeue(context.WithoutCancel(ctx), size)
					if err == nil && ferr == nil {
						tenthsMu.Lock()
						tenthPages = append(tenthPages, claimIndexPages(lines))
						tenthFull = append(tenthFull, claimIndexPages(full))
						tenthsMu.Unlock()
					}
				}()
			}
			return n, err
		},
	})
	stopProducers()
	producers.Wait()
	select {
	case err := <-prodErr:
		return nil, fmt.Errorf("producer: %w", err)
	default:
	}
	if err != nil {
		return nil, err
	}
	endPlan, endPages, endFull, err := explain("the end")
	if err != nil {
		return nil, err
	}
	r := b.result("drain-steady")
	r.Consumers, r.Batch, r.Backlog = cons, size, backlog
	r.FillSeconds = fillTime.Seconds()
	st.fill(r)
	tenthsMu.Lock()
	slices.SortFunc(tenths, func(a, b time.Time) int { return a.Compare(b) })
	prev := time.Now().Add(-st.elapsed)
	for _, at := range tenths {
		r.TenthsPerSec = append(r.TenthsPerSec, float64(tenth)/at.Sub(prev).Seconds())
		prev = at
	}
	r.TenthPages, r.TenthFullPages = tenthPages, tenthFull
	tenthsMu.Unlock()
	r.ClaimPlanStart, r.ClaimPlanEnd = startPlan, endPlan
	r.ClaimPagesStart, r.ClaimPagesEnd = startPages, endPages
	r.FullPagesStart, r.FullPagesEnd = startFull, endFull
	if n := len(r.TenthsPerSec); n == 10 && r.TenthsPerSec[0] > 0 {
		v := r.TenthsPerSec[9] / r.TenthsPerSec[0]
		r.LastOverFirst = &v
	}
	b.logf("%s: %d messages in %.2fs: %.0f msgs/s; tenths %v", label, st.done, st.elapsed.Seconds(), r.MsgsPerSec, roundAll(r.TenthsPerSec))
	if _, err := b.s.Admin().PurgeQueue(ctx, queue); err != nil && !errors.Is(err, context.Canceled) {
		return nil, err
	}
	return r, nil
}

// claimIndexPages sums the shared buffers (hit and read) of the plan's
// scans of pgqrs_messages_claim: the Buffers line that follows each such
// node in EXPLAIN (ANALYZE, BUFFERS) text. 0 for plans without buffers
// (SQLite, Turso).
func claimIndexPages(lines []string) int64 {
	var total int64
	for i, line := range lines {
		if !strings.Contains(line, "using pgqrs_messages_claim") {
			continue
		}
		for _, next := range lines[i+1:] {
			if strings.HasPrefix(strings.TrimSpace(next), "->") {
				break
			}
			if _, buf, ok := strings.Cut(next, "Buffers: shared"); ok {
				for _, f := range strings.Fields(buf) {
					if k, v, ok := strings.Cut(f, "="); ok && (k == "hit" || k == "read") {
						n, _ := strconv.ParseInt(v, 10, 64)
						total += n
					}
				}
				break
			}
		}
	}
	return total
}

func roundAll(vs []float64) []int64 {
	out := make([]int64, len(vs))
	for i, v := range vs {
		out[i] = int64(math.Round(v))
	}
	return out
}
