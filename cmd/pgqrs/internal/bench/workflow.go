package bench

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// noopFlow is the workflow scenario's workflow: three steps that do
// nothing but add one. done counts finished runs.
func noopFlow(name string, done *atomic.Int64) *pgqrs.Workflow[int, int] {
	return pgqrs.NewWorkflow(name, func(ctx context.Context, run *pgqrs.Run, in int) (int, error) {
		v := in
		for _, step := range [...]string{"one", "two", "three"} {
			var err error
			if v, err = pgqrs.Step(ctx, run, step, func(context.Context) (int, error) { return v + 1, nil }); err != nil {
				return 0, err
			}
		}
		done.Add(1)
		return v, nil
	})
}

// workflowName registers a fresh workflow of this invocation and arranges
// for it to be deleted when bench ends.
func (b *bencher) workflowName(suffix string) string {
	name := fmt.Sprintf("%s%s-%d", b.prefix, suffix, time.Now().UnixNano())
	b.workflows = append(b.workflows, name)
	return name
}

// workflowDrain triggers --runs runs of a three-step no-op workflow, then
// serves them at concurrency conc and reports runs per second from the
// worker's start until the last run finished (triggering is not timed).
func (b *bencher) workflowDrain(ctx context.Context, conc int) (*Result, error) {
	n := b.flags.runs
	label := fmt.Sprintf("workflow c%d", conc)
	var done atomic.Int64
	wf := noopFlow(b.workflowName("wf"), &done)
	if err := wf.Register(ctx, b.s); err != nil {
		return nil, err
	}
	b.logf("%s: triggering %d runs", label, n)
	fillStart := time.Now()
	for i := range n {
		if _, err := wf.Trigger(ctx, b.s, i); err != nil {
			return nil, err
		}
	}
	fillTime := time.Since(fillStart)
	b.logf("%s: triggered in %.2fs (%.0f runs/s)", label, fillTime.Seconds(), float64(n)/fillTime.Seconds())
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopProgress := b.progressTicker(label, &done, int64(n))
	errc := make(chan error, 1)
	start := time.Now()
	go func() {
		errc <- wf.Serve(sctx, b.s, &pgqrs.RunOptions{Concurrency: conc, BatchSize: max(conc, 10), PollInterval: b.flags.poll})
	}()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for done.Load() < int64(n) {
		select {
		case err := <-errc:
			stopProgress()
			return nil, fmt.Errorf("serve stopped early: %v", err)
		case <-ctx.Done():
			stopProgress()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
	elapsed := time.Since(start)
	stopProgress()
	cancel()
	if err := <-errc; err != nil {
		return nil, err
	}
	r := b.result("workflow")
	r.Mode, r.Concurrency, r.Batch, r.Backlog = "drain", conc, max(conc, 10), n
	r.FillSeconds = fillTime.Seconds()
	r.Messages, r.Seconds = int64(n), elapsed.Seconds()
	r.MsgsPerSec = float64(n) / elapsed.Seconds()
	b.logf("%s: %d runs in %.2fs: %.0f runs/s", label, n, elapsed.Seconds(), r.MsgsPerSec)
	return r, nil
}

// workflowLatency triggers one run at a time against an idle worker (the
// same Store, concurrency 8) for --duration, and reports trigger → result
// percentiles.
func (b *bencher) workflowLatency(ctx context.Context) (*Result, error) {
	var done atomic.Int64
	wf := noopFlow(b.workflowName("wflat"), &done)
	if err := wf.Register(ctx, b.s); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- wf.Serve(sctx, b.s, &pgqrs.RunOptions{Concurrency: 8, PollInterval: b.flags.poll})
	}()
	var lat []time.Duration
	start := time.Now()
	for time.Since(start) < b.flags.duration {
		t0 := time.Now()
		id, err := wf.Trigger(ctx, b.s, len(lat))
		if err != nil {
			return nil, err
		}
		wctx, wcancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = wf.Result(wctx, b.s, id)
		wcancel()
		if err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	cancel()
	if err := <-errc; err != nil {
		return nil, err
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[int(float64(len(lat)-1)*p)].Microseconds()) / 1000
	}
	r := b.result("workflow")
	r.Mode, r.Concurrency = "latency", 8
	r.Messages, r.Seconds = int64(len(lat)), elapsed.Seconds()
	r.MsgsPerSec = float64(len(lat)) / elapsed.Seconds()
	r.LatencyMs = &Percentiles{P50: pct(0.5), P95: pct(0.95), P99: pct(0.99)}
	b.logf("workflow latency: %d runs, trigger → result p50 %.2f ms, p95 %.2f ms", len(lat), r.LatencyMs.P50, r.LatencyMs.P95)
	return r, nil
}

// runWorkflows runs the workflow scenario: a drain per concurrency, then
// the latency run.
func (b *bencher) runWorkflows(ctx context.Context, concs []int) error {
	for _, conc := range concs {
		r, err := b.workflowDrain(ctx, conc)
		if err != nil {
			return fmt.Errorf("workflow c%d: %w", conc, err)
		}
		if err := b.emit(r); err != nil {
			return err
		}
	}
	r, err := b.workflowLatency(ctx)
	if err != nil {
		return fmt.Errorf("workflow latency: %w", err)
	}
	return b.emit(r)
}

// deleteWorkflows removes the workflows this invocation created.
func (b *bencher) deleteWorkflows(ctx context.Context) {
	for _, name := range b.workflows {
		if err := b.s.Admin().DeleteWorkflow(ctx, name); err != nil {
			b.logf("cleanup: %v", err)
		}
	}
}
