package pgqrs

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestListMessagesAndThroughput(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		if _, err := a.CreateQueue(ctx, "inspect"); err != nil {
			t.Fatal(err)
		}
		p, err := s.Producer(ctx, "inspect")
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.Consumer(ctx, "inspect")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := p.Enqueue(ctx, i, Header("n", "<b>")); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := p.Enqueue(ctx, "later", Delay(time.Hour)); err != nil {
			t.Fatal(err)
		}
		msgs, err := c.Dequeue(ctx, 2)
		if err != nil || len(msgs) != 2 {
			t.Fatalf("dequeue: %v, %v", msgs, err)
		}
		if err := c.Archive(ctx, msgs[0].ID); err != nil {
			t.Fatal(err)
		}
		counts := map[MessageState]int{}
		all, err := a.ListMessages(ctx, "inspect", MessagePage{})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range all {
			counts[m.State]++
		}
		if len(all) != 3 || counts[MessageLeased] != 1 || counts[MessageVisible] != 1 || counts[MessageDelayed] != 1 {
			t.Errorf("live messages = %d by state %v, want one of each", len(all), counts)
		}
		leased, err := a.ListMessages(ctx, "inspect", MessagePage{State: MessageLeased, Limit: 5})
		if err != nil || len(leased) != 1 || leased[0].ID != msgs[1].ID || leased[0].Headers["n"] != "<b>" {
			t.Errorf("leased = %+v, %v; want message %d with its header", leased, err, msgs[1].ID)
		}
		points, err := a.Throughput(ctx, "inspect", 15)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for i, pt := range points {
			n += pt.Archived
			if i > 0 && pt.Minute.Sub(points[i-1].Minute) != time.Minute {
				t.Errorf("point %d at %v, previous at %v: want one a minute", i, pt.Minute, points[i-1].Minute)
			}
		}
		if len(points) != 15 || n != 1 {
			t.Errorf("throughput = %d points with %d archived, want 15 points and 1", len(points), n)
		}

		for _, tc := range []struct {
			what string
			err  error
			want error
		}{
			{"unknown queue", second(a.ListMessages(ctx, "nope", MessagePage{})), ErrQueueNotFound},
			{"bad state", second(a.ListMessages(ctx, "inspect", MessagePage{State: "archived"})), ErrInvalidArgument},
			{"negative limit", second(a.ListMessages(ctx, "inspect", MessagePage{Limit: -1})), ErrInvalidArgument},
			{"page too large", second(a.ListMessages(ctx, "inspect", MessagePage{Limit: 1 << 20})), ErrBatchTooLarge},
			{"throughput of unknown queue", second(a.Throughput(ctx, "nope", 5)), ErrQueueNotFound},
			{"no minutes", second(a.Throughput(ctx, "inspect", 0)), ErrInvalidArgument},
			{"too many minutes", second(a.Throughput(ctx, "inspect", MaxThroughputMinutes+1)), ErrInvalidArgument},
		} {
			if !errors.Is(tc.err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.what, tc.err, tc.want)
			}
		}
	})
}

func second[T any](_ T, err error) error { return err }

// BenchmarkDashboardReads measures the dashboard's reads on a queue with a
// large archive (100,000 processed messages) and 1,000 live ones:
//
//	go test -run XXX -bench '^BenchmarkDashboardReads$' -benchtime=200x -timeout 30m .
//
// Throughput reads at most ThroughputScanLimit archived rows, so its cost
// is bounded whatever the archive holds.
func BenchmarkDashboardReads(b *testing.B) {
	for _, backend := range []string{"sqlite", "postgres"} {
		b.Run(backend, func(b *testing.B) {
			s := benchStore(b, backend)
			ctx := context.Background()
			name, p := benchQueue(b, s, "dash")
			c := benchConsumer(b, s, name)
			const archived, live, batch = 100_000, 1_000, 1_000
			payloads := make([]any, batch)
			for i := range payloads {
				payloads[i] = benchPayload(i)
			}
			for n := 0; n < archived; n += batch {
				if _, err := p.EnqueueBatch(ctx, payloads); err != nil {
					b.Fatal(err)
				}
				msgs, err := c.Dequeue(ctx, batch)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := c.ArchiveBatch(ctx, msgIDs(msgs)); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := p.EnqueueBatch(ctx, payloads[:live]); err != nil {
				b.Fatal(err)
			}
			a := s.Admin()
			b.Run("Throughput15m", func(b *testing.B) {
				for b.Loop() {
					if _, err := a.Throughput(ctx, name, 15); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("ListMessages50", func(b *testing.B) {
				for b.Loop() {
					if _, err := a.ListMessages(ctx, name, MessagePage{State: MessageVisible, Limit: 50}); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("QueueMetrics", func(b *testing.B) {
				for b.Loop() {
					if _, err := a.QueueMetrics(ctx, name); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
