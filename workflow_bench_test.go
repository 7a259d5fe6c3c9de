package pgqrs

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

var benchWorkflowSeq atomic.Int64

// noopFlow is a three-step workflow whose steps do nothing; done counts
// finished runs.
func noopFlow(name string, done *atomic.Int64) *Workflow[int, int] {
	return NewWorkflow(name, func(ctx context.Context, run *Run, in int) (int, error) {
		v := in
		for _, step := range []string{"one", "two", "three"} {
			var err error
			if v, err = Step(ctx, run, step, func(context.Context) (int, error) { return v + 1, nil }); err != nil {
				return 0, err
			}
		}
		done.Add(1)
		return v, nil
	})
}

func benchRuns(backend string) int {
	if v, err := strconv.Atoi(os.Getenv("PGQRS_BENCH_RUNS")); err == nil && v > 0 {
		return v
	}
	if backend == "turso-http" {
		return 300
	}
	return 2000
}

// BenchmarkWorkflow drains a backlog of three-step no-op runs through one
// Serve at concurrency 1, 8 and 32 and reports runs per second (from the
// worker's start until the last run finished; triggering is not timed).
func BenchmarkWorkflow(b *testing.B) {
	for _, backend := range benchBackends() {
		for _, conc := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/c%d", backend, conc), func(b *testing.B) {
				s := benchStore(b, backend)
				ctx := context.Background()
				n := benchRuns(backend)
				var rate float64
				for range b.N {
					var done atomic.Int64
					wf := noopFlow(fmt.Sprintf("bench-%d", benchWorkflowSeq.Add(1)), &done)
					if err := wf.Register(ctx, s); err != nil {
						b.Fatal(err)
					}
					for i := range n {
						if _, err := wf.Trigger(ctx, s, i); err != nil {
							b.Fatal(err)
						}
					}
					sctx, cancel := context.WithCancel(ctx)
					errc := make(chan error, 1)
					start := time.Now()
					go func() {
						errc <- wf.Serve(sctx, s, &RunOptions{Concurrency: conc, BatchSize: max(conc, 10), PollInterval: 100 * time.Millisecond})
					}()
					for done.Load() < int64(n) {
						time.Sleep(time.Millisecond)
					}
					rate = float64(n) / time.Since(start).Seconds()
					cancel()
					if err := <-errc; err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(rate, "runs/s")
			})
		}
	}
}

// BenchmarkWorkflowLatency triggers one three-step run at a time against an
// idle worker and reports trigger → result (Workflow.Result) percentiles.
func BenchmarkWorkflowLatency(b *testing.B) {
	for _, backend := range benchBackends() {
		b.Run(backend, func(b *testing.B) {
			s := benchStore(b, backend)
			ctx := context.Background()
			var done atomic.Int64
			wf := noopFlow(fmt.Sprintf("lat-%d", benchWorkflowSeq.Add(1)), &done)
			if err := wf.Register(ctx, s); err != nil {
				b.Fatal(err)
			}
			sctx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 1)
			go func() { errc <- wf.Serve(sctx, s, &RunOptions{Concurrency: 8}) }()
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				id, err := wf.Trigger(ctx, s, i)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := wf.Result(ctx, s, id); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			cancel()
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
			slices.Sort(lat)
			b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(percentile(lat, 0.95).Microseconds())/1000, "p95-ms")
		})
	}
}

// BenchmarkFanOut runs one parent that starts 100 one-step children and
// awaits them all, with the parent and children served at concurrency 32,
// and reports the wall time from trigger to the parent's result.
func BenchmarkFanOut(b *testing.B) {
	const children = 100
	for _, backend := range benchBackends() {
		b.Run(backend, func(b *testing.B) {
			s := benchStore(b, backend)
			ctx := context.Background()
			parent, child := fanFlows(fmt.Sprintf("fan-%d", benchWorkflowSeq.Add(1)), -1)
			for _, w := range []interface {
				Register(context.Context, *Store) error
			}{child, parent} {
				if err := w.Register(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
			sctx, cancel := context.WithCancel(ctx)
			errc := make(chan error, 2)
			opts := &RunOptions{Concurrency: 32, BatchSize: 32, PollInterval: 100 * time.Millisecond}
			go func() { errc <- child.Serve(sctx, s, opts) }()
			go func() { errc <- parent.Serve(sctx, s, opts) }()
			var total time.Duration
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				id, err := parent.Trigger(ctx, s, children)
				if err != nil {
					b.Fatal(err)
				}
				sum, err := parent.Result(ctx, s, id)
				if err != nil || sum != children*(children-1) {
					b.Fatalf("fan-in = %d, %v", sum, err)
				}
				total += time.Since(start)
			}
			b.StopTimer()
			cancel()
			for range 2 {
				if err := <-errc; err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/fan-out")
		})
	}
}
