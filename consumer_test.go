package pgqrs

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

type job struct {
	To   string `json:"to"`
	Seq  int    `json:"seq"`
	Tags []string
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "emails")
		want := job{To: "ada@example.com", Seq: 1, Tags: []string{"a", "b"}}
		id := mustEnqueue(t, p, want)

		msgs := mustDequeue(t, c, 10)
		if len(msgs) != 1 {
			t.Fatalf("dequeued %d messages, want 1", len(msgs))
		}
		m := msgs[0]
		var got job
		if err := json.Unmarshal(m.Payload, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("payload (-want +got):\n%s", diff)
		}
		if m.ID != id || m.ReadCount != 1 || m.Queue != "emails" {
			t.Errorf("message = {ID:%d ReadCount:%d Queue:%q}, want {ID:%d ReadCount:1 Queue:emails}", m.ID, m.ReadCount, m.Queue, id)
		}
		if lease := time.Until(m.VisibleAt); lease < 20*time.Second || lease > 40*time.Second {
			t.Errorf("lease ends in %v, want about the 30s default", lease)
		}
		if again := mustDequeue(t, c, 10); len(again) != 0 {
			t.Fatalf("leased message delivered again: %v", msgIDs(again))
		}
		if err := c.Archive(ctx, id); err != nil {
			t.Fatalf("archive: %v", err)
		}
		wantErr(t, c.Archive(ctx, id), ErrMessageNotFound)

		am, err := s.Admin().GetArchived(ctx, "emails", id)
		if err != nil {
			t.Fatal(err)
		}
		var archived job
		if err := json.Unmarshal(am.Payload, &archived); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, archived); diff != "" {
			t.Errorf("archived payload (-want +got):\n%s", diff)
		}
		if am.Dead || am.ReadCount != 1 || am.ArchivedAt.IsZero() {
			t.Errorf("archived = %+v", am)
		}
	})
}

func TestRawPayloads(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "raw")
		payloads := []any{json.RawMessage(`{"a": [1, 2]}`), []byte(`"text"`), 42, "plain string", []int{1, 2}}
		for _, v := range payloads {
			mustEnqueue(t, p, v)
		}
		msgs := mustDequeue(t, c, 10)
		var got []any
		for _, m := range msgs {
			var v any
			if err := json.Unmarshal(m.Payload, &v); err != nil {
				t.Fatalf("payload %s: %v", m.Payload, err)
			}
			got = append(got, v)
		}
		want := []any{map[string]any{"a": []any{1.0, 2.0}}, "text", 42.0, "plain string", []any{1.0, 2.0}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("payloads (-want +got):\n%s", diff)
		}
	})
}

func TestDequeueOrderAndBatch(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "orders")
		var want []int64
		for i := range 7 {
			want = append(want, mustEnqueue(t, p, map[string]int{"i": i}))
		}
		first := mustDequeue(t, c, 3)
		rest := mustDequeue(t, c, 10)
		if diff := cmp.Diff(want[:3], msgIDs(first)); diff != "" {
			t.Errorf("first batch (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want[3:], msgIDs(rest)); diff != "" {
			t.Errorf("second batch (-want +got):\n%s", diff)
		}
		ok, err := c.ArchiveBatch(t.Context(), append(msgIDs(first), 999999))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]bool{true, true, true, false}, ok); diff != "" {
			t.Errorf("archive batch results (-want +got):\n%s", diff)
		}
		ok, err = c.DeleteBatch(t.Context(), msgIDs(rest))
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(ok, false) {
			t.Errorf("delete batch results = %v, want all true", ok)
		}
		m := metrics(t, s, "orders")
		if m.Pending+m.Leased != 0 || m.Archived != 3 {
			t.Errorf("metrics after drain = %+v, want no live messages and 3 archived", m)
		}
	})
}

func TestDelayedMessages(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, s *Store) {
		p, c := fixture(t, s, "later")
		// Generous delays: the "not yet" check below must not race a slow
		// machine. start is taken before the enqueues, so it is a lower
		// bound however long they take.
		start := time.Now()
		delayed := mustEnqueue(t, p, "in 700ms", Delay(700*time.Millisecond))
		at := mustEnqueue(t, p, "at now+700ms", At(start.Add(700*time.Millisecond)))
		farAway := mustEnqueue(t, p, "tomorrow", Delay(24*time.Hour))
		if got := mustDequeue(t, c, 10); len(got) != 0 {
			t.Fatalf("delayed messages delivered early: %v", msgIDs(got))
		}
		if m := metrics(t, s, "later"); m.Delayed != 3 || m.Visible != 0 || m.Pending != 3 {
			t.Errorf("metrics = %+v, want 3 delayed, 0 visible", m)
		}
		var got []int64
		for len(got) < 2 {
			got = append(got, msgIDs(awaitDequeue(t, c, 10, 5*time.Second))...)
		}
		if waited := time.Since(start); waited < 600*time.Millisecond {
			t.Errorf("delayed messages visible after %v, want >= 700ms", waited)
		}
		slices.Sort(got)
		if diff := cmp.Diff([]int64{delayed, at}, got); diff != "" {
			t.Errorf("visible after delay (-want +got):\n%s", diff)
		}
		if m := metrics(t, s, "later"); m.Delayed != 1 || m.Leased != 2 {
			t.Errorf("metrics = %+v, want 1 delayed (id %d), 2 leased", m, farAway)
		}
		past := mustEnqueue(t, p, "past", At(time.Now().Add(-time.Hour)))
		if got := mustDequeue(t, c, 10); len(got) != 1 || got[0].ID != past {
			t.Errorf("message at a past time not visible at once: %v", msgIDs(got))
		}
	})
}

func TestVisibilityTimeoutRedeliversAndFences(t *testing.T) {
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, a := fixture(t, s, "fenced")
		b, err := s.Consumer(ctx, "fenced")
		if err != nil {
			t.Fatal(err)
		}
		id := mustEnqueue(t, p, "work")
		first := mustDequeue(t, a, 1, VisibilityTimeout(700*time.Millisecond))
		if len(first) != 1 || first[0].ReadCount != 1 {
			t.Fatalf("first delivery = %+v", first)
		}
		if got := mustDequeue(t, b, 1); len(got) != 0 {
			t.Fatalf("leased message claimed by a second consumer: %v", msgIDs(got))
		}
		second := awaitDequeue(t, b, 1, 5*time.Second)
		if second[0].ID != id || second[0].ReadCount != 2 {
			t.Fatalf("redelivery = {ID:%d ReadCount:%d}, want {ID:%d ReadCount:2}", second[0].ID, second[0].ReadCount, id)
		}

		// A's lease is gone: nothing it does may touch B's delivery.
		wantErr(t, a.Archive(ctx, id), ErrLeaseLost)
		wantErr(t, a.Delete(ctx, id), ErrLeaseLost)
		wantErr(t, a.ExtendVisibility(ctx, id, time.Minute), ErrLeaseLost)
		wantErr(t, a.Release(ctx, id, 0), ErrLeaseLost)
		ok, err := a.ArchiveBatch(ctx, []int64{id})
		if err != nil || ok[0] {
			t.Fatalf("stale batch archive = %v, %v; want [false], nil", ok, err)
		}
		if m := metrics(t, s, "fenced"); m.Leased != 1 || m.Archived != 0 {
			t.Fatalf("stale consumer changed the message: %+v", m)
		}

		if err := b.ExtendVisibility(ctx, id, time.Minute); err != nil {
			t.Fatalf("holder extend: %v", err)
		}
		if err := b.Archive(ctx, id); err != nil {
			t.Fatalf("holder archive: %v", err)
		}
		if n, _ := s.Admin().CountArchived(ctx, "fenced"); n != 1 {
			t.Errorf("archived count = %d, want 1", n)
		}
	})
}

func TestReleaseAndExtend(t *testing.T) {
	forEachBackendSerial(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "release")
		id := mustEnqueue(t, p, "x")
		mustDequeue(t, c, 1)
		if err := c.Release(ctx, id, 0); err != nil {
			t.Fatal(err)
		}
		got := mustDequeue(t, c, 1)
		if len(got) != 1 || got[0].ReadCount != 2 {
			t.Fatalf("after release got %+v, want the message with read count 2", got)
		}
		if err := c.Release(ctx, id, time.Hour); err != nil {
			t.Fatal(err)
		}
		if m := metrics(t, s, "release"); m.Delayed != 1 || m.Leased != 0 {
			t.Errorf("after delayed release metrics = %+v, want 1 delayed", m)
		}
		if got := mustDequeue(t, c, 1); len(got) != 0 {
			t.Fatalf("message released for an hour delivered at once")
		}
		wantErr(t, c.Release(ctx, id, -time.Second), ErrInvalidArgument)

		// Extend: a short lease extended outlives its original timeout.
		id2 := mustEnqueue(t, p, "y")
		mustDequeue(t, c, 1, VisibilityTimeout(200*time.Millisecond))
		ok, err := c.ExtendVisibilityBatch(ctx, []int64{id2}, time.Minute)
		if err != nil || !ok[0] {
			t.Fatalf("extend = %v, %v", ok, err)
		}
		time.Sleep(400 * time.Millisecond) // past the original 200ms lease
		if got := mustDequeue(t, c, 1); len(got) != 0 {
			t.Fatalf("extended lease expired: %v", msgIDs(got))
		}
		wantErr(t, c.ExtendVisibility(ctx, id2, 0), ErrInvalidArgument)
		wantErr(t, c.ExtendVisibility(ctx, 424242, time.Second), ErrMessageNotFound)
	})
}

// TestConcurrentDrain runs 8 consumers against 5,000 messages: every message
// is archived exactly once and none is delivered twice. On Postgres the
// consumers use four separate pools, as separate processes would.
func TestConcurrentDrain(t *testing.T) {
	t.Parallel()
	const total, consumers = 5000, 8
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			s := openBackend(t, b)
			ctx := t.Context()
			if err := s.Admin().Install(ctx); err != nil {
				t.Fatal(err)
			}
			p, _ := fixture(t, s, "drain")
			batch := make([]any, 500)
			for i := 0; i < total; i += len(batch) {
				for j := range batch {
					batch[j] = map[string]int{"n": i + j}
				}
				if _, err := p.EnqueueBatch(ctx, batch); err != nil {
					t.Fatal(err)
				}
			}
			stores := []*Store{s}
			if s.Dialect() == Postgres {
				for range 3 {
					other, err := New(s.DB(), Postgres, schemaOpt(s)...)
					if err != nil {
						t.Fatal(err)
					}
					stores = append(stores, other)
				}
			}
			var mu sync.Mutex
			seen := map[int64]int64{} // message → consumer worker
			var wg sync.WaitGroup
			errs := make(chan error, consumers)
			for i := range consumers {
				c, err := stores[i%len(stores)].Consumer(ctx, "drain")
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					for {
						msgs, err := c.Dequeue(ctx, 10)
						if err != nil {
							errs <- err
							return
						}
						if len(msgs) == 0 {
							return
						}
						mu.Lock()
						for _, m := range msgs {
							if prev, dup := seen[m.ID]; dup {
								mu.Unlock()
								errs <- fmtErr("message %d delivered to worker %d and worker %d", m.ID, prev, c.ID())
								return
							}
							seen[m.ID] = c.ID()
						}
						mu.Unlock()
						ok, err := c.ArchiveBatch(ctx, msgIDs(msgs))
						if err != nil {
							errs <- err
							return
						}
						if slices.Contains(ok, false) {
							errs <- fmtErr("archive of a held message failed: %v", ok)
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if len(seen) != total {
				t.Errorf("delivered %d distinct messages, want %d", len(seen), total)
			}
			m := metrics(t, s, "drain")
			if m.Archived != total || m.Pending != 0 || m.Leased != 0 {
				t.Errorf("after drain metrics = %+v, want %d archived and none live", m, total)
			}
		})
	}
}

// TestDequeueDeadLettersAfterDefaultMaxAttempts: the sixth claim of a
// message that was never archived dead-letters it.
func TestDequeueDeadLettersAfterDefaultMaxAttempts(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "attempts")
		id := mustEnqueue(t, p, "flaky")
		for attempt := 1; attempt <= DefaultMaxAttempts; attempt++ {
			got := mustDequeue(t, c, 1)
			if len(got) != 1 || got[0].ReadCount != attempt {
				t.Fatalf("attempt %d: got %+v", attempt, got)
			}
			if err := c.Release(ctx, id, 0); err != nil {
				t.Fatal(err)
			}
		}
		if got := mustDequeue(t, c, 1); len(got) != 0 {
			t.Fatalf("delivered a %dth time: %+v", DefaultMaxAttempts+1, got)
		}
		d, err := s.Admin().GetArchived(ctx, "attempts", id)
		// Five deliveries happened; the sixth claim only found the message
		// exhausted (issue 10, item 12).
		want := fmt.Sprintf("no success in %d attempts: the last one ended without a result (its lease expired or it was released)", DefaultMaxAttempts)
		if err != nil || !d.Dead || d.ReadCount != DefaultMaxAttempts || d.LastError != want {
			t.Errorf("dead letter = %+v, %v; want read count %d and reason %q", d, err, DefaultMaxAttempts, want)
		}
	})
}

// TestExhaustedDeadLetterSaysWhatHappened: a message whose handler failed
// once and whose next delivery's lease then expired is dead-lettered by the
// claim that finds it exhausted with a reason naming the expired lease
// first, the old handler error second, and the read count of its real
// deliveries (issue 10, item 12).
func TestExhaustedDeadLetterSaysWhatHappened(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "exhaust")
		id := mustEnqueue(t, p, "x")
		got := mustDequeue(t, c, 1)
		if len(got) != 1 {
			t.Fatalf("first dequeue: %+v", got)
		}
		// What Run does after a handler error: release, recording it.
		if _, err := c.settle(ctx, nil, "release", []int64{id}, s.messages.fail(0, "boom")); err != nil {
			t.Fatal(err)
		}
		mustDequeue(t, c, 1, VisibilityTimeout(50*time.Millisecond)) // then its consumer dies
		if got := awaitNone(t, c, MaxAttempts(2)); len(got) != 0 {
			t.Fatalf("delivered a third time: %+v", got)
		}
		d, err := s.Admin().GetArchived(ctx, "exhaust", id)
		want := "no success in 2 attempts: the last one ended without a result (its lease expired or it was released); last handler error: boom"
		if err != nil || !d.Dead || d.ReadCount != 2 || d.LastError != want {
			t.Errorf("dead letter = %+v, %v; want read count 2 and reason %q", d, err, want)
		}
	})
}

// awaitNone claims until the message leased for a short while has been
// dead-lettered (the claim returns nothing and no live message is left).
func awaitNone(t *testing.T, c *Consumer, opts ...DequeueOption) []*Message {
	t.Helper()
	var got []*Message
	await(t, 10*time.Second, "the exhausted message to be dead-lettered", func() bool {
		got = mustDequeue(t, c, 1, opts...)
		m := metrics(t, c.s, c.queue)
		return len(got) > 0 || m.Pending+m.Leased == 0
	})
	return got
}

// TestDequeueFindsMessagesBehindItsFloors: while its queue is backlogged a
// Postgres consumer's claims start where its previous claim stopped, past
// the dead index entries left behind (floorState). A message that later
// appears before that point (here: enqueued with a visible-at time in the
// past) is still claimed: a claim that comes up short from the floors
// takes the rest from the start of the range in the same Dequeue, and a
// claim reads from the start at least every fullClaimEvery.
func TestDequeueFindsMessagesBehindItsFloors(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "floors")
		batch := make([]any, 200)
		for i := range batch {
			batch[i] = i
		}
		if _, err := p.EnqueueBatch(ctx, batch); err != nil {
			t.Fatal(err)
		}
		first := mustDequeue(t, c, 50)
		if len(first) != 50 {
			t.Fatalf("claimed %d of 50", len(first))
		}
		if _, err := c.ArchiveBatch(ctx, msgIDs(first)); err != nil {
			t.Fatal(err)
		}
		past := mustEnqueue(t, p, "past", At(time.Now().Add(-time.Hour)))
		// Short from the floors (150 left there): the rest from the start.
		rest := mustDequeue(t, c, 1000)
		if len(rest) != 151 || !slices.Contains(msgIDs(rest), past) {
			t.Fatalf("claimed %d messages, want 151 with %d (visible an hour ago) among them", len(rest), past)
		}
		if _, err := c.ArchiveBatch(ctx, msgIDs(rest)); err != nil {
			t.Fatal(err)
		}

		// Backlogged throughout: a full range read within fullClaimEvery.
		for range 3 {
			if _, err := p.EnqueueBatch(ctx, batch); err != nil {
				t.Fatal(err)
			}
		}
		mustDequeue(t, c, 10)
		late := mustEnqueue(t, p, "late", At(time.Now().Add(-time.Hour)))
		deadline := time.Now().Add(fullClaimEvery + 5*time.Second)
		for found := false; !found; {
			if time.Now().After(deadline) {
				t.Fatalf("message %d, visible an hour ago, not claimed within %v of backlogged claims", late, fullClaimEvery+5*time.Second)
			}
			msgs := mustDequeue(t, c, 1)
			if len(msgs) == 0 {
				t.Fatal("the backlog ran out before the test ended")
			}
			found = msgs[0].ID == late
			if _, err := c.ArchiveBatch(ctx, msgIDs(msgs)); err != nil {
				t.Fatal(err)
			}
			if !found {
				time.Sleep(10 * time.Millisecond) // keep the 600 messages lasting past fullClaimEvery
			}
		}
	})
}
