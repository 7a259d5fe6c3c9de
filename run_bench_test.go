package pgqrs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// benchBackends are the backends a benchmark runs on; PGQRS_BENCH_BACKENDS
// (comma-separated) narrows them.
func benchBackends() []string {
	v := os.Getenv("PGQRS_BENCH_BACKENDS")
	if v == "" {
		return backends
	}
	var out []string
	for _, b := range backends {
		if slices.Contains(strings.Split(v, ","), b) {
			out = append(out, b)
		}
	}
	return out
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

// BenchmarkRunLatency measures enqueue → handler start for an idle Run loop.
// "wakeup": the producer's enqueue wakes the loop (in-process on every
// backend; through LISTEN/NOTIFY from another pool on Postgres). "poll": the
// producer uses another Store and the consumer has no LISTEN connection, so
// only the 100ms poll finds messages. Each op is one message, 20ms apart.
func BenchmarkRunLatency(b *testing.B) {
	for _, backend := range benchBackends() {
		for _, mode := range []string{"wakeup", "poll"} {
			b.Run(backend+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				s := benchStore(b, backend)
				queue, p := benchQueue(b, s, "lat")
				consumerStore := s
				var err error
				switch {
				case mode == "poll":
					consumerStore, err = New(s.DB(), s.Dialect(), schemaOpt(s)...) // no LISTEN DSN
					if err != nil {
						b.Fatal(err)
					}
				case backend == "postgres": // the producer uses another pool
					other, err := Open(ctx, os.Getenv("PGQRS_TEST_POSTGRES_DSN"), schemaOpt(s)...)
					if err != nil {
						b.Fatal(err)
					}
					defer other.Close()
					if p, err = other.Producer(ctx, queue); err != nil {
						b.Fatal(err)
					}
				}
				c, err := consumerStore.Consumer(ctx, queue)
				if err != nil {
					b.Fatal(err)
				}
				lat := make(chan time.Duration, 1)
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				poll := time.Second
				if mode == "poll" {
					poll = 100 * time.Millisecond
				}
				go func() {
					done <- c.Run(rctx, func(ctx context.Context, m *Message) error {
						var sent struct{ T int64 }
						if err := json.Unmarshal(m.Payload, &sent); err != nil {
							return err
						}
						lat <- time.Since(time.Unix(0, sent.T))
						return nil
					}, &RunOptions{Concurrency: 4, PollInterval: poll})
				}()
				if backend == "postgres" && mode == "wakeup" {
					deadline := time.Now().Add(10 * time.Second)
					for !consumerStore.listening.Load() && time.Now().Before(deadline) {
						time.Sleep(5 * time.Millisecond)
					}
				}
				time.Sleep(200 * time.Millisecond) // let the loop go idle
				var all []time.Duration
				b.ResetTimer()
				for range b.N {
					if _, err := p.Enqueue(ctx, map[string]int64{"T": time.Now().UnixNano()}); err != nil {
						b.Fatal(err)
					}
					select {
					case d := <-lat:
						all = append(all, d)
					case <-time.After(10 * time.Second):
						b.Fatal("message not handled within 10s")
					}
					time.Sleep(20 * time.Millisecond)
				}
				b.StopTimer()
				cancel()
				<-done
				slices.Sort(all)
				b.ReportMetric(float64(percentile(all, 0.50).Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(percentile(all, 0.95).Microseconds())/1000, "p95-ms")
				b.ReportMetric(float64(percentile(all, 0.99).Microseconds())/1000, "p99-ms")
			})
		}
	}
}

// BenchmarkRunDrain drains a backlog through Consumer.Run with a no-op
// handler at several concurrency × batch settings and reports msgs/s. The
// backlog is PGQRS_BENCH_BACKLOG messages (default 50,000; 10,000 on Turso
// over HTTP). Run with -benchtime=1x: each op is one whole drain.
func BenchmarkRunDrain(b *testing.B) {
	for _, backend := range benchBackends() {
		for _, conc := range []int{1, 4, 16} {
			for _, batch := range []int{1, 10, 50} {
				b.Run(fmt.Sprintf("%s/c%d/b%d", backend, conc, batch), func(b *testing.B) {
					total := 50000
					if backend == "turso-http" {
						total = 10000
					}
					if v, err := strconv.Atoi(os.Getenv("PGQRS_BENCH_BACKLOG")); err == nil && v > 0 {
						total = v
					}
					var rate float64
					for range b.N {
						rate = runDrainOnce(b, backend, total, conc, batch)
					}
					b.ReportMetric(rate, "msgs/s")
				})
			}
		}
	}
}

func runDrainOnce(b *testing.B, backend string, total, conc, batch int) float64 {
	b.StopTimer()
	ctx := context.Background()
	s := benchStore(b, backend)
	queue, p := benchQueue(b, s, "drain")
	benchFill(b, p, total)
	c := benchConsumer(b, s, queue)
	var handled atomic.Int64
	finished := make(chan struct{})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	b.StartTimer()
	start := time.Now()
	go func() {
		done <- c.Run(rctx, func(ctx context.Context, m *Message) error {
			if handled.Add(1) == int64(total) {
				close(finished)
			}
			return nil
		}, &RunOptions{Concurrency: conc, BatchSize: batch, PollInterval: 10 * time.Millisecond})
	}()
	select {
	case <-finished:
	case <-time.After(20 * time.Minute):
		b.Fatal("drain did not finish")
	}
	cancel()
	if err := <-done; err != nil { // Run returns after archiving the last successes
		b.Fatal(err)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	if n, err := s.Admin().CountArchived(ctx, queue); err != nil || n != int64(total) {
		b.Fatalf("archived %d of %d: %v", n, total, err)
	}
	return float64(total) / elapsed.Seconds()
}
