package bench

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// Flow-control scenarios (docs/flow-control.md):
//
//   - drain-limited: the backlog drained by 2 Run loops × 16 handlers (32)
//     claiming batches of 10 (the first --batch value is ignored: the
//     figure is defined at 10), once with no limits and once with
//     max-in-flight 16, so the two rows show what the limited claim costs.
//   - drain-grouped: --backlog ÷ 10 key groups × 10 messages (--backlog
//     100000 for 10,000 groups), enqueued message s of every group then s+1, drained
//     by one Run loop of 32 handlers at batch 10 with the default per-group
//     limit of 1; the row also reports the rate of each tenth of the drain,
//     which stays flat when the claim never walks blocked groups.
const (
	limitedLoops, limitedConc, limitedBatch, limitedN = 2, 16, 10, 16
	groupSize, groupConc, groupBatch                  = 10, 32, 10
)

// drainLimited runs the drain-limited rows: unlimited, then limited.
func (b *bencher) drainLimited(ctx context.Context) ([]*Result, error) {
	var out []*Result
	for _, limit := range []int{0, limitedN} {
		mode := "unlimited"
		if limit > 0 {
			mode = fmt.Sprintf("max-in-flight=%d", limit)
		}
		label := "drain-limited " + mode
		queue, fillTime, err := b.prefilled(ctx, label, "limited", b.flags.backlog, 1)
		if err != nil {
			return nil, err
		}
		if err := b.s.Admin().SetLimits(ctx, queue, pgqrs.Limits{MaxInFlight: limit}); err != nil {
			return nil, err
		}
		r, err := b.runFlowDrain(ctx, label, queue, b.flags.backlog, limitedLoops, limitedConc, limitedBatch)
		if err != nil {
			return nil, err
		}
		r.Scenario, r.Mode, r.Backlog, r.FillSeconds = "drain-limited", mode, b.flags.backlog, fillTime.Seconds()
		out = append(out, r)
	}
	return out, nil
}

// drainGrouped runs the drain-grouped row.
func (b *bencher) drainGrouped(ctx context.Context) (*Result, error) {
	const label = "drain-grouped"
	groupCount := max(b.flags.backlog/groupSize, 1)
	n := groupCount * groupSize
	queue, err := b.queue(ctx, "grouped")
	if err != nil {
		return nil, err
	}
	if err := b.s.Admin().SetLimits(ctx, queue, pgqrs.Limits{}); err != nil {
		return nil, err
	}
	p, err := b.s.Producer(ctx, queue)
	if err != nil {
		return nil, err
	}
	defer p.Shutdown(context.WithoutCancel(ctx))
	b.logf("%s: enqueueing %d groups × %d", label, groupCount, groupSize)
	start := time.Now()
	jobs := make([]pgqrs.Job, 0, 1000)
	for s := range groupSize {
		for g := range groupCount {
			key := fmt.Sprintf("g%d", g)
			jobs = append(jobs, pgqrs.Job{Payload: jobPayload(s), Options: []pgqrs.EnqueueOption{pgqrs.Group(key)}})
			if len(jobs) == cap(jobs) {
				if _, err := p.EnqueueJobs(ctx, jobs); err != nil {
					return nil, err
				}
				jobs = jobs[:0]
			}
		}
	}
	if len(jobs) > 0 {
		if _, err := p.EnqueueJobs(ctx, jobs); err != nil {
			return nil, err
		}
	}
	fillTime := time.Since(start)
	b.logf("%s: enqueued in %.2fs (%.0f msgs/s)", label, fillTime.Seconds(), float64(n)/fillTime.Seconds())
	if err := b.vacuum(ctx, "pgqrs_messages"); err != nil {
		return nil, err
	}
	r, err := b.runFlowDrain(ctx, label, queue, n, 1, groupConc, groupBatch)
	if err != nil {
		return nil, err
	}
	r.Scenario, r.Mode, r.Backlog, r.FillSeconds = "drain-grouped", fmt.Sprintf("%d×%d", groupCount, groupSize), n, fillTime.Seconds()
	return r, nil
}

// runFlowDrain drains queue's n messages with loops Run loops of conc handlers
// claiming batch at a time, and returns the row with the rate of each
// tenth of the drain.
func (b *bencher) runFlowDrain(ctx context.Context, label, queue string, n, loops, conc, batch int) (*Result, error) {
	var handled atomic.Int64
	finished := make(chan struct{})
	var tenthsMu sync.Mutex
	tenths := make([]time.Time, 0, 10)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h := func(ctx context.Context, _ *pgqrs.Message) error {
		if d := b.flags.handlerTime; d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		k := handled.Add(1)
		if k%int64(max(n/10, 1)) == 0 {
			tenthsMu.Lock()
			tenths = append(tenths, time.Now())
			tenthsMu.Unlock()
		}
		if k == int64(n) {
			close(finished)
		}
		return nil
	}
	stopProgress := b.progressTicker(label, &handled, int64(n))
	done := make(chan error, loops)
	start := time.Now()
	for range loops {
		c, err := b.s.Consumer(ctx, queue)
		if err != nil {
			return nil, err
		}
		go func() {
			done <- c.Run(rctx, h, &pgqrs.RunOptions{Concurrency: conc, BatchSize: batch, PollInterval: b.flags.poll})
		}()
	}
	var runErr error
	select {
	case <-finished:
	case <-time.After(runDeadline):
		runErr = fmt.Errorf("not drained within %v", runDeadline)
	case <-ctx.Done():
		runErr = ctx.Err()
	}
	elapsed := time.Since(start)
	cancel()
	for range loops {
		if err := <-done; err != nil && runErr == nil {
			runErr = err
		}
	}
	stopProgress()
	if runErr != nil {
		return nil, runErr
	}
	archived, err := b.s.Admin().CountArchived(ctx, queue)
	if err != nil {
		return nil, err
	}
	r := b.result("")
	r.Concurrency, r.Consumers, r.Batch = conc, loops, batch
	r.PollMs = float64(b.flags.poll) / float64(time.Millisecond)
	r.HandlerMs = float64(b.flags.handlerTime) / float64(time.Millisecond)
	r.Messages, r.Seconds = archived, elapsed.Seconds()
	r.MsgsPerSec = float64(archived) / elapsed.Seconds()
	if archived != int64(n) {
		r.Errors = int64(n) - archived
	}
	prev := start
	for _, at := range tenths {
		r.TenthsPerSec = append(r.TenthsPerSec, float64(n/10)/at.Sub(prev).Seconds())
		prev = at
	}
	b.logf("%s: %d messages in %.2fs: %.0f msgs/s", label, archived, elapsed.Seconds(), r.MsgsPerSec)
	return r, nil
}
