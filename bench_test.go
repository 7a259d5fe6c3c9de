package pgqrs

// Benchmarks of the hot paths on every backend:
//
//	go test -run XXX -bench '^Benchmark(Enqueue|ClaimArchive)$' -benchtime=2s -timeout 30m .
//	go test -run XXX -bench '^Benchmark(Drain100k|DrainPlanPostgres)$' -benchtime=1x -timeout 30m .
//
// The Postgres and Turso sub-benchmarks skip locally unless
// PGQRS_TEST_POSTGRES_DSN / PGQRS_TEST_TURSO_URL are set (see openBackend).
// The drain benchmarks do a fixed amount of work per iteration; run them
// with -benchtime=1x.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var benchQueueSeq atomic.Int64

// benchPayload is a small JSON job, as an application would enqueue.
func benchPayload(i int) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"id":%d,"kind":"email"}`, i))
}

// benchStore opens an installed store on backend.
func benchStore(b *testing.B, backend string) *Store {
	b.Helper()
	s := openBackend(b, backend)
	if err := s.Admin().Install(context.Background()); err != nil {
		b.Fatalf("install: %v", err)
	}
	return s
}

// benchQueue creates a fresh queue and returns its name and a producer on it.
func benchQueue(b *testing.B, s *Store, prefix string) (string, *Producer) {
	b.Helper()
	ctx := context.Background()
	name := fmt.Sprintf("%s-%d", prefix, benchQueueSeq.Add(1))
	if _, err := s.Admin().CreateQueue(ctx, name); err != nil {
		b.Fatalf("create queue: %v", err)
	}
	p, err := s.Producer(ctx, name)
	if err != nil {
		b.Fatalf("producer: %v", err)
	}
	return name, p
}

func benchConsumer(b *testing.B, s *Store, queue string) *Consumer {
	b.Helper()
	c, err := s.Consumer(context.Background(), queue)
	if err != nil {
		b.Fatalf("consumer: %v", err)
	}
	return c
}

// benchFill enqueues n payloads with EnqueueBatch in chunks of 1000.
func benchFill(b *testing.B, p *Producer, n int) {
	b.Helper()
	ctx := context.Background()
	chunk := make([]any, 0, 1000)
	for i := 0; i < n; {
		chunk = chunk[:0]
		for j := 0; j < 1000 && i < n; j, i = j+1, i+1 {
			chunk = append(chunk, benchPayload(i))
		}
		if _, err := p.EnqueueBatch(ctx, chunk); err != nil {
			b.Fatalf("prefill: %v", err)
		}
	}
}

func BenchmarkEnqueue(b *testing.B) {
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			s := benchStore(b, backend)
			ctx := context.Background()
			b.Run("single", func(b *testing.B) {
				_, p := benchQueue(b, s, "enq1")
				payload := benchPayload(123)
				for b.Loop() {
					if _, err := p.Enqueue(ctx, payload); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			})
			b.Run("batch100", func(b *testing.B) {
				_, p := benchQueue(b, s, "enq100")
				batch := make([]any, 100)
				for i := range batch {
					batch[i] = benchPayload(i)
				}
				for b.Loop() {
					if _, err := p.EnqueueBatch(ctx, batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*100)/b.Elapsed().Seconds(), "msgs/s")
			})
		})
	}
}

// benchClaimBacklog is the backlog a ClaimArchive run keeps in its queue:
// prefilled before the timer starts and topped up (timer stopped) whenever a
// chunk of it has been consumed, so every run, batch size and backend claims
// from the same backlog whatever b.N is.
const benchClaimBacklog = 20_000

func BenchmarkClaimArchive(b *testing.B) {
	for _, backend := range backends {
		b.Run(backend, func(b *testing.B) {
			s := benchStore(b, backend)
			ctx := context.Background()
			for _, batch := range []int{1, 10, 50, 500} {
				b.Run(fmt.Sprintf("batch%d", batch), func(b *testing.B) {
					queue, p := benchQueue(b, s, fmt.Sprintf("claim%d", batch))
					c := benchConsumer(b, s, queue)
					benchFill(b, p, benchClaimBacklog)
					backlog, claimed := benchClaimBacklog, 0
					b.ResetTimer()
					for i := 0; i < b.N; i++ {
						if backlog < benchClaimBacklog-1000 {
							b.StopTimer()
							benchFill(b, p, benchClaimBacklog-backlog)
							backlog = benchClaimBacklog
							b.StartTimer()
						}
						msgs, err := c.Dequeue(ctx, batch)
						if err != nil {
							b.Fatal(err)
						}
						if len(msgs) != batch {
							b.Fatalf("op %d: claimed %d messages, want %d", i, len(msgs), batch)
						}
						ok, err := c.ArchiveBatch(ctx, msgIDs(msgs))
						if err != nil {
							b.Fatal(err)
						}
						for j, done := range ok {
							if !done {
								b.Fatalf("message %d not archived", msgs[j].ID)
							}
						}
						claimed += len(msgs)
						backlog -= len(msgs)
					}
					b.StopTimer()
					b.ReportMetric(float64(claimed)/b.Elapsed().Seconds(), "msgs/s")
				})
			}
		})
	}
}

// drainResult is one timed drain of a prefilled queue.
type drainResult struct {
	total                int
	elapsed              time.Duration
	first, last, overall float64 // msgs/s over the first 10%, last 10%, all
	emptyPolls           int64
}

// drain claims and archives all n messages of queue with consumers
// goroutines, each looping Dequeue(batch) + ArchiveBatch, and measures the
// rate over the first and the last 10% of the messages.
func drain(b *testing.B, s *Store, queue string, n, consumers, batch int) drainResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cs := make([]*Consumer, consumers)
	for i := range cs {
		cs[i] = benchConsumer(b, s, queue)
	}
	var (
		done       atomic.Int64
		empty      atomic.Int64
		t10, t90   atomic.Int64 // ns since start when 10% / 90% were archived
		n10, n90   atomic.Int64 // archived count at those moments
		firstErr   error
		errOnce    sync.Once
		wg         sync.WaitGroup
		lo, hi     = int64(n / 10), int64(n - n/10)
		start      = time.Now()
		stopOnFail = func(err error) { errOnce.Do(func() { firstErr = err; cancel() }) }
	)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Load() < int64(n) && ctx.Err() == nil {
				msgs, err := c.Dequeue(ctx, batch)
				if err != nil {
					stopOnFail(err)
					return
				}
				if len(msgs) == 0 {
					empty.Add(1)
					time.Sleep(time.Millisecond)
					continue
				}
				ok, err := c.ArchiveBatch(ctx, msgIDs(msgs))
				if err != nil {
					stopOnFail(err)
					return
				}
				for j, a := range ok {
					if !a {
						stopOnFail(fmt.Errorf("message %d not archived", msgs[j].ID))
						return
					}
				}
				now := done.Add(int64(len(msgs)))
				prev := now - int64(len(msgs))
				if prev < lo && now >= lo {
					t10.Store(int64(time.Since(start)))
					n10.Store(now)
				}
				if prev < hi && now >= hi {
					t90.Store(int64(time.Since(start)))
					n90.Store(now)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		b.Fatalf("drain: %v", firstErr)
	}
	if got := done.Load(); got != int64(n) {
		b.Fatalf("drain: archived %d of %d messages", got, n)
	}
	r := drainResult{total: n, elapsed: elapsed, emptyPolls: empty.Load()}
	r.first = float64(n10.Load()) / time.Duration(t10.Load()).Seconds()
	r.last = float64(int64(n)-n90.Load()) / (elapsed - time.Duration(t90.Load())).Seconds()
	r.overall = float64(n) / elapsed.Seconds()
	return r
}

// drainSize is the backlog of a drain: 100k, 20k on Turso (HTTP is slow).
func drainSize(backend string) int {
	if strings.HasPrefix(backend, "turso") {
		return 20_000
	}
	return 100_000
}

// BenchmarkDrain100k prefills a fresh queue and drains it once per
// iteration; the first-10% and last-10% rates show whether a claim's cost
// grows with the number of processed messages. Run with -benchtime=1x.
func BenchmarkDrain100k(b *testing.B) {
	type variant struct {
		consumers, batch int
		analyze          bool // Postgres: ANALYZE after the prefill, else keep autovacuum off
	}
	for _, backend := range backends {
		variants := []variant{{1, 50, false}}
		if backend == "postgres" {
			variants = append(variants, variant{1, 50, true}, variant{4, 50, false}, variant{4, 50, true})
		}
		b.Run(backend, func(b *testing.B) {
			for _, v := range variants {
				name := fmt.Sprintf("c%d-b%d", v.consumers, v.batch)
				if backend == "postgres" && v.analyze {
					name += "-analyzed"
				} else if backend == "postgres" {
					name += "-stale"
				}
				b.Run(name, func(b *testing.B) {
					s := benchStore(b, backend)
					n := drainSize(backend)
					var r drainResult
					for b.Loop() {
						b.StopTimer()
						queue, p := benchQueue(b, s, "drain")
						if backend == "postgres" {
							benchStats(b, s, v.analyze, func() { benchFill(b, p, n) })
						} else {
							benchFill(b, p, n)
						}
						b.StartTimer()
						r = drain(b, s, queue, n, v.consumers, v.batch)
					}
					b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
					b.ReportMetric(r.first, "first10pct-msgs/s")
					b.ReportMetric(r.last, "last10pct-msgs/s")
					b.ReportMetric(float64(r.emptyPolls), "empty-polls")
				})
			}
		})
	}
}

// benchStats runs fill on a Postgres store and leaves pgqrs_messages either
// analyzed or with the statistics of a table that was never analyzed: with
// analyze false, autovacuum is off for the table (the whole benchmark), so
// an autoanalyze that happens to run cannot change the plans mid-run.
func benchStats(b *testing.B, s *Store, analyze bool, fill func()) {
	b.Helper()
	table := s.d.qualify("pgqrs_messages")
	if !analyze {
		if _, err := s.DB().Exec("ALTER TABLE " + table + " SET (autovacuum_enabled = false)"); err != nil {
			b.Fatal(err)
		}
	}
	fill()
	if analyze {
		if _, err := s.DB().Exec("ANALYZE " + table); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDrainPlanPostgres drains a fresh 50k-message Postgres queue with
// 4 consumers × batch 50, once with the statistics left as a fresh fill
// leaves them (never analyzed) and once after ANALYZE, to show what plans
// chosen under stale statistics cost. Three queues share the
// table, filled in interleaved chunks, as in a real multi-queue install.
// Run with -benchtime=1x.
func BenchmarkDrainPlanPostgres(b *testing.B) {
	for _, analyze := range []bool{false, true} {
		name := "stale-stats"
		if analyze {
			name = "analyzed"
		}
		b.Run(name, func(b *testing.B) {
			s := benchStore(b, "postgres")
			const n = 50_000
			var r drainResult
			for b.Loop() {
				b.StopTimer()
				var queues []string
				var producers []*Producer
				for range 3 {
					q, p := benchQueue(b, s, "plan")
					queues, producers = append(queues, q), append(producers, p)
				}
				benchStats(b, s, analyze, func() {
					for i := 0; i < n/1000; i++ {
						for _, p := range producers {
							benchFill(b, p, 1000)
						}
					}
				})
				b.StartTimer()
				r = drain(b, s, queues[0], n, 4, 50)
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(r.first, "first10pct-msgs/s")
			b.ReportMetric(r.last, "last10pct-msgs/s")
		})
	}
}
