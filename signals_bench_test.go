package pgqrs

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// BenchmarkSignalLatency measures a signal's round trip: Runs.Send to a
// run suspended in Recv (its message given back, no worker holding it)
// until the workflow function runs again past the Recv. Each op is one
// run: trigger it and wait for its suspension (not timed), then send
// (timed). "local": the Send goes through the worker's Store (an
// in-process wakeup); "remote", on Postgres: through another Store on the
// same database, so only the NOTIFY wakes the worker. The worker polls
// every minute, so a wakeup that fails shows as a minute.
func BenchmarkSignalLatency(b *testing.B) {
	for _, backend := range benchBackends() {
		modes := []string{"local"}
		if backend == "postgres" {
			modes = append(modes, "remote")
		}
		for _, mode := range modes {
			b.Run(backend+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				var s, sender *Store
				if mode == "local" {
					s = benchStore(b, backend)
					sender = s
				} else {
					dsn, opts := backendDSN(b, backend)
					for _, p := range []**Store{&s, &sender} {
						st, err := Open(ctx, dsn, opts...)
						if err != nil {
							b.Fatal(err)
						}
						b.Cleanup(func() { st.Close() })
						if err := st.Admin().Install(ctx); err != nil {
							b.Fatal(err)
						}
						*p = st
					}
				}
				resumed := make(chan int64, 1)
				suspended := make(chan struct{}, 1)
				s.hooks = &testHooks{afterGiveBack: func([]int64) { suspended <- struct{}{} }}
				wf := NewWorkflow(fmt.Sprintf("siglat-%d", benchWorkflowSeq.Add(1)), func(ctx context.Context, run *Run, _ int) (int, error) {
					v, _, err := Recv[int](ctx, run, "wait", "ping", time.Hour)
					if err != nil {
						return 0, err
					}
					resumed <- run.ID()
					return v, nil
				})
				if err := wf.Register(ctx, s); err != nil {
					b.Fatal(err)
				}
				sctx, cancel := context.WithCancel(ctx)
				errc := make(chan error, 1)
				go func() { errc <- wf.Serve(sctx, s, &RunOptions{Concurrency: 8, PollInterval: time.Minute}) }()
				lat := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for i := range b.N {
					b.StopTimer()
					id, err := wf.Trigger(ctx, s, i)
					if err != nil {
						b.Fatal(err)
					}
					select {
					case <-suspended:
					case <-time.After(time.Minute):
						b.Fatal("the run did not suspend in Recv")
					}
					b.StartTimer()
					start := time.Now()
					if err := sender.Runs().Send(ctx, id, "ping", i); err != nil {
						b.Fatal(err)
					}
					if got := <-resumed; got != id {
						b.Fatalf("run %d resumed, want %d", got, id)
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
}
