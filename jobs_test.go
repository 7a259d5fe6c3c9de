package pgqrs

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Unique jobs (Key, UniqueFor), per-item batches (EnqueueJobs), priorities
// and headers, on every backend.

// enqueueDup enqueues with opts and wants a duplicate of want.
func enqueueDup(t *testing.T, p *Producer, want int64, opts ...EnqueueOption) {
	t.Helper()
	id, err := p.Enqueue(t.Context(), "dup", opts...)
	if !errors.Is(err, ErrDuplicate) || id != want {
		t.Fatalf("enqueue of a taken key = %d, %v; want %d, ErrDuplicate", id, err, want)
	}
}

// deadLetter dead-letters id, which must be the only visible message c can
// claim, by releasing it and claiming with MaxAttempts(1).
func deadLetter(t *testing.T, c *Consumer, id int64) {
	t.Helper()
	if err := c.Release(t.Context(), id, 0); err != nil {
		t.Fatalf("release %d: %v", id, err)
	}
	if got := mustDequeue(t, c, 10, MaxAttempts(1)); len(got) != 0 {
		t.Fatalf("exhausted message delivered: %v", msgIDs(got))
	}
}

func TestKeyDeduplicatesLiveMessages(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "keys")
		first := mustEnqueue(t, p, "one", Key("invoice-42"))
		enqueueDup(t, p, first, Key("invoice-42"))
		// Another key, and the same key in another queue, are free.
		other := mustEnqueue(t, p, "two", Key("invoice-43"))
		p2, _ := fixture(t, s, "keys-2")
		mustEnqueue(t, p2, "elsewhere", Key("invoice-42"))
		// A message without a key is never a duplicate.
		mustEnqueue(t, p, "plain")
		mustEnqueue(t, p, "plain")
		if m := metrics(t, s, "keys"); m.Pending != 4 {
			t.Errorf("pending = %d, want 4", m.Pending)
		}

		// Leased, the message still holds its key; archived, it frees it.
		msgs := mustDequeue(t, c, 1)
		if len(msgs) != 1 || msgs[0].ID != first {
			t.Fatalf("claimed %v, want [%d]", msgIDs(msgs), first)
		}
		enqueueDup(t, p, first, Key("invoice-42"))
		if err := c.Archive(ctx, first); err != nil {
			t.Fatal(err)
		}
		again := mustEnqueue(t, p, "again", Key("invoice-42"))
		if again == first {
			t.Fatalf("enqueue after archive returned the archived ID %d", first)
		}
		enqueueDup(t, p, again, Key("invoice-42"))

		// A delayed message holds its key; a deleted one frees it.
		delayed := mustEnqueue(t, p, "later", Key("delayed"), Delay(time.Hour))
		enqueueDup(t, p, delayed, Key("delayed"))
		mustDequeue(t, c, 10) // the rest, so other can be deleted
		if err := c.Delete(ctx, other); err != nil {
			t.Fatal(err)
		}
		mustEnqueue(t, p, "after delete", Key("invoice-43"))

		// EnqueueBatch: one payload with a key behaves like Enqueue.
		ids, err := p.EnqueueBatch(ctx, []any{"batch"}, Key("delayed"))
		if !errors.Is(err, ErrDuplicate) || !slices.Equal(ids, []int64{delayed}) {
			t.Errorf("EnqueueBatch of one taken key = %v, %v; want [%d], ErrDuplicate", ids, err, delayed)
		}
		_, err = p.EnqueueBatch(ctx, []any{1, 2}, Key("k"))
		wantErr(t, err, ErrInvalidArgument)
		if !strings.Contains(err.Error(), "EnqueueJobs") {
			t.Errorf("error does not point to EnqueueJobs: %v", err)
		}
	})
}

func TestUniqueForCoversArchivedMessages(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		p, c := fixture(t, s, "period")
		day := UniqueFor(24 * time.Hour)
		id := mustEnqueue(t, p, "daily", Key("report"), day)
		mustDequeue(t, c, 1)
		if err := c.Archive(ctx, id); err != nil {
			t.Fatal(err)
		}
		// Archived, it still holds the key for the period, not without it.
		enqueueDup(t, p, id, Key("report"), day)
		fresh := mustEnqueue(t, p, "no period", Key("report"))
		// A live message holds its key whatever the period.
		enqueueDup(t, p, fresh, Key("report"), day)

		// Dead letters hold the key for the period too.
		dl := mustEnqueue(t, p, "dies", Key("dead"))
		mustDequeue(t, c, 10) // fresh and dl
		if err := c.Archive(ctx, fresh); err != nil {
			t.Fatal(err)
		}
		deadLetter(t, c, dl)
		if n, _ := a.CountDeadLetters(ctx, "period"); n != 1 {
			t.Fatalf("dead letters = %d, want 1", n)
		}
		enqueueDup(t, p, dl, Key("dead"), day)
		// The newest archived message is the one reported.
		enqueueDup(t, p, fresh, Key("report"), day)

		// The period expires.
		short := mustEnqueue(t, p, "short", Key("short"))
		mustDequeue(t, c, 1)
		if err := c.Archive(ctx, short); err != nil {
			t.Fatal(err)
		}
		enqueueDup(t, p, short, Key("short"), UniqueFor(time.Hour))
		time.Sleep(1200 * time.Millisecond)
		if _, err := p.Enqueue(ctx, "after", Key("short"), UniqueFor(time.Second)); err != nil {
			t.Fatalf("enqueue after the period ended: %v", err)
		}
	})
}

func TestEnqueueTxDuplicateKeepsTxUsable(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "txkeys")
		held := mustEnqueue(t, p, "committed", Key("held"))
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		if id, err := p.EnqueueTx(ctx, tx, "dup", Key("held")); !errors.Is(err, ErrDuplicate) || id != held {
			t.Fatalf("EnqueueTx of a committed key = %d, %v; want %d, ErrDuplicate", id, err, held)
		}
		mine, err := p.EnqueueTx(ctx, tx, "mine", Key("mine"))
		if err != nil {
			t.Fatalf("EnqueueTx after a duplicate: %v", err)
		}
		// The transaction's own message holds its key within it.
		if id, err := p.EnqueueTx(ctx, tx, "dup", Key("mine")); !errors.Is(err, ErrDuplicate) || id != mine {
			t.Fatalf("EnqueueTx of a key taken in the tx = %d, %v; want %d, ErrDuplicate", id, err, mine)
		}
		res, err := p.EnqueueJobsTx(ctx, tx, []Job{{Payload: 1, Options: []EnqueueOption{Key("mine")}}, {Payload: 2}})
		if err != nil {
			t.Fatalf("EnqueueJobsTx after duplicates: %v", err)
		}
		if !res[0].Duplicate || res[0].ID != mine || res[1].Duplicate {
			t.Errorf("EnqueueJobsTx = %+v", res)
		}
		if err := tx.Commit(); err != nil {
			t.Fatalf("commit after duplicates: %v", err)
		}
		want := []int64{held, mine, res[1].ID}
		if diff := cmp.Diff(want, msgIDs(mustDequeue(t, c, 10))); diff != "" {
			t.Errorf("messages after commit (-want +got):\n%s", diff)
		}
	})
}

func TestEnqueueJobs(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "jobs")
		held := mustEnqueue(t, p, "held", Key("held"))
		res, err := p.EnqueueJobs(ctx, []Job{
			{Payload: "low", Options: []EnqueueOption{Priority(5)}},
			{Payload: "a", Options: []EnqueueOption{Key("a"), Header("trace", "t-1")}},
			{Payload: "held", Options: []EnqueueOption{Key("held")}},
			{Payload: "a again", Options: []EnqueueOption{Key("a"), Priority(9)}},
			{Payload: "later", Options: []EnqueueOption{Key("b"), Delay(time.Hour)}},
			{Payload: map[string]int{"n": 5}, Options: []EnqueueOption{Headers(map[string]string{"x": "1", "y": "2"})}},
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 6 {
			t.Fatalf("results = %+v, want 6", res)
		}
		want := []Enqueued{
			{ID: res[0].ID}, {ID: res[1].ID}, {ID: held, Duplicate: true},
			{ID: res[1].ID, Duplicate: true}, {ID: res[4].ID}, {ID: res[5].ID},
		}
		if diff := cmp.Diff(want, res); diff != "" {
			t.Errorf("results (-want +got):\n%s", diff)
		}
		if !(held < res[0].ID && res[0].ID < res[1].ID && res[1].ID < res[4].ID && res[4].ID < res[5].ID) {
			t.Errorf("inserted IDs %v do not ascend in job order", res)
		}
		// Most urgent first: held, a, the map (priority 0), then low (5);
		// later is delayed.
		msgs := mustDequeue(t, c, 10)
		if diff := cmp.Diff([]int64{held, res[1].ID, res[5].ID, res[0].ID}, msgIDs(msgs)); diff != "" {
			t.Fatalf("claimed (-want +got):\n%s", diff)
		}
		type got struct {
			Priority int
			Headers  map[string]string
		}
		var gots []got
		for _, m := range msgs {
			gots = append(gots, got{m.Priority, m.Headers})
		}
		wantGot := []got{{0, nil}, {0, map[string]string{"trace": "t-1"}}, {0, map[string]string{"x": "1", "y": "2"}}, {5, nil}}
		if diff := cmp.Diff(wantGot, gots); diff != "" {
			t.Errorf("priorities and headers (-want +got):\n%s", diff)
		}
		if m := metrics(t, s, "jobs"); m.Delayed != 1 {
			t.Errorf("delayed = %d, want 1", m.Delayed)
		}
		// Payloads stored as sent.
		if string(msgs[2].Payload) != `{"n":5}` && strings.ReplaceAll(string(msgs[2].Payload), " ", "") != `{"n":5}` {
			t.Errorf("payload = %s", msgs[2].Payload)
		}

		// Bad jobs name their index and insert nothing.
		before := metrics(t, s, "jobs")
		_, err = p.EnqueueJobs(ctx, []Job{{Payload: 1}, {Payload: []byte(`{"broken"`)}})
		wantErr(t, err, ErrInvalidPayload)
		if !strings.Contains(err.Error(), "job 1") {
			t.Errorf("error does not name job 1: %v", err)
		}
		_, err = p.EnqueueJobs(ctx, []Job{{Payload: 1}, {Payload: 2}, {Payload: 3, Options: []EnqueueOption{UniqueFor(time.Hour)}}})
		wantErr(t, err, ErrInvalidArgument)
		if !strings.Contains(err.Error(), "job 2") {
			t.Errorf("error does not name job 2: %v", err)
		}
		if after := metrics(t, s, "jobs"); after.Pending != before.Pending || after.Leased != before.Leased {
			t.Errorf("rejected batches changed the queue: %+v → %+v", before, after)
		}
		empty, err := p.EnqueueJobs(ctx, nil)
		if err != nil || len(empty) != 0 {
			t.Errorf("empty batch = %v, %v", empty, err)
		}
		big := make([]Job, s.cfg.maxBatch+1)
		for i := range big {
			big[i] = Job{Payload: i}
		}
		_, err = p.EnqueueJobs(ctx, big)
		wantErr(t, err, ErrBatchTooLarge)

		// A batch of 100 keys, half taken.
		jobs := make([]Job, 100)
		for i := range jobs {
			jobs[i] = Job{Payload: i, Options: []EnqueueOption{Key(fmt.Sprintf("n-%d", i%50))}}
		}
		res, err = p.EnqueueJobs(ctx, jobs)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Duplicate != (i >= 50) || (i >= 50 && r.ID != res[i-50].ID) {
				t.Fatalf("job %d: %+v (first of its key: %+v)", i, r, res[i%50])
			}
		}
		res2, err := p.EnqueueJobs(ctx, jobs[:50])
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res2 {
			if !r.Duplicate || r.ID != res[i].ID {
				t.Fatalf("again, job %d: %+v, want a duplicate of %d", i, r, res[i].ID)
			}
		}
	})
}

// TestClaimOrder: a claim takes the most urgent visible messages first,
// then the earliest visible, then the lowest ID.
func TestClaimOrder(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		p, c := fixture(t, s, "order")
		now := time.Now()
		e := func(name string, opts ...EnqueueOption) int64 { return mustEnqueue(t, p, name, opts...) }
		a := e("a", Priority(5))
		b := e("b", At(now.Add(-time.Hour)))
		cc := e("c")
		d := e("d", At(now.Add(-2*time.Hour)))
		ee := e("e", Priority(MaxPriority))
		f := e("f", Priority(5), At(now.Add(-time.Hour)))
		e("hidden", Priority(0), Delay(time.Hour))
		// Same priority and visible-at (one statement): by ID.
		res, err := p.EnqueueJobs(ctx, []Job{
			{Payload: "g", Options: []EnqueueOption{Priority(3)}},
			{Payload: "h", Options: []EnqueueOption{Priority(3)}},
		})
		if err != nil {
			t.Fatal(err)
		}
		g, h := res[0].ID, res[1].ID
		want := []int64{d, b, cc, g, h, f, a, ee}
		var one []int64
		for range want {
			msgs := mustDequeue(t, c, 1)
			if len(msgs) != 1 {
				t.Fatalf("claimed %v", msgIDs(msgs))
			}
			one = append(one, msgs[0].ID)
		}
		if diff := cmp.Diff(want, one); diff != "" {
			t.Errorf("claims of one (-want +got):\n%s", diff)
		}
		if got := mustDequeue(t, c, 10); len(got) != 0 {
			t.Errorf("claimed the delayed message: %v", msgIDs(got))
		}

		// One claim of many returns them in the same order.
		p2, c2 := fixture(t, s, "order-batch")
		var ids []int64
		for _, pr := range []int{9, 0, 5, 0, 9, 3} {
			ids = append(ids, mustEnqueue(t, p2, pr, Priority(pr)))
		}
		want = []int64{ids[1], ids[3], ids[5], ids[2], ids[0], ids[4]}
		if diff := cmp.Diff(want, msgIDs(mustDequeue(t, c2, 10))); diff != "" {
			t.Errorf("one claim (-want +got):\n%s", diff)
		}
		// A claim smaller than the backlog takes the most urgent.
		p3, c3 := fixture(t, s, "order-limit")
		for i := range 20 {
			mustEnqueue(t, p3, i, Priority(9-i%10))
		}
		for _, m := range mustDequeue(t, c3, 4) {
			if m.Priority > 1 {
				t.Errorf("a claim of 4 of 20 took priority %d", m.Priority)
			}
		}
	})
}

func TestHeadersRoundTrip(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		p, c := fixture(t, s, "headers")
		h := map[string]string{"traceparent": "00-abc-def-01", "tenant": "ünïcode", "empty": ""}
		done := mustEnqueue(t, p, "done", Headers(h), Priority(2))
		msgs := mustDequeue(t, c, 1)
		if len(msgs) != 1 {
			t.Fatal("no message")
		}
		if diff := cmp.Diff(h, msgs[0].Headers); diff != "" {
			t.Errorf("Message.Headers (-want +got):\n%s", diff)
		}
		if err := c.Archive(ctx, done); err != nil {
			t.Fatal(err)
		}
		am, err := a.GetArchived(ctx, "headers", done)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(h, am.Headers); diff != "" || am.Priority != 2 {
			t.Errorf("archived headers (-want +got):\n%s; priority %d", diff, am.Priority)
		}
		dead := mustEnqueue(t, p, "dead", Header("k", "v"))
		mustDequeue(t, c, 1)
		deadLetter(t, c, dead)
		dls, err := a.ListDeadLetters(ctx, "headers", ArchivePage{Limit: 10})
		if err != nil || len(dls) != 1 {
			t.Fatalf("dead letters = %v, %v", dls, err)
		}
		if diff := cmp.Diff(map[string]string{"k": "v"}, dls[0].Headers); diff != "" {
			t.Errorf("dead letter headers (-want +got):\n%s", diff)
		}
		// Replayed, the message keeps them.
		if n, err := a.ReplayAllDeadLetters(ctx, "headers"); err != nil || n != 1 {
			t.Fatalf("replay = %d, %v", n, err)
		}
		msgs = mustDequeue(t, c, 1)
		if len(msgs) != 1 || msgs[0].Headers["k"] != "v" {
			t.Errorf("replayed message = %+v", msgs)
		}
	})
}

func TestReplayLeavesKeyHoldersAlone(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		a := s.Admin()
		p, c := fixture(t, s, "replay-keys")
		old := mustEnqueue(t, p, "old", Key("k"))
		mustDequeue(t, c, 1)
		deadLetter(t, c, old)
		// Dead, the message frees its key: a new one takes it.
		live := mustEnqueue(t, p, "new", Key("k"))
		plain := mustEnqueue(t, p, "plain")
		mustDequeue(t, c, 10)
		deadLetter(t, c, plain)
		n, err := a.ReplayAllDeadLetters(ctx, "replay-keys")
		if err != nil || n != 1 {
			t.Fatalf("replay with the key held = %d, %v; want 1 (the message without a key)", n, err)
		}
		if n, _ := a.CountDeadLetters(ctx, "replay-keys"); n != 1 {
			t.Errorf("dead letters after replay = %d, want 1", n)
		}
		if n, err := a.ReplayDeadLetters(ctx, "replay-keys", []int64{old}); err != nil || n != 0 {
			t.Errorf("replay of the held key's dead letter = %d, %v; want 0", n, err)
		}
		// Once the key is free, it replays.
		if got := mustDequeue(t, c, 10); len(got) != 1 || got[0].ID != plain {
			t.Fatalf("claimed %v, want [%d]", msgIDs(got), plain)
		}
		if err := c.Archive(ctx, live); err != nil {
			t.Fatal(err)
		}
		if n, err := a.ReplayDeadLetters(ctx, "replay-keys", []int64{old}); err != nil || n != 1 {
			t.Fatalf("replay once the key is free = %d, %v", n, err)
		}
		enqueueDup(t, p, old, Key("k"))

		// Two dead letters with one key: only the newest goes live.
		mustDequeue(t, c, 10)
		deadLetter(t, c, old)
		newer := mustEnqueue(t, p, "newer", Key("k"))
		mustDequeue(t, c, 10)
		deadLetter(t, c, newer)
		if n, err := a.ReplayAllDeadLetters(ctx, "replay-keys"); err != nil || n != 1 {
			t.Fatalf("replay of two dead letters with one key = %d, %v; want 1", n, err)
		}
		enqueueDup(t, p, newer, Key("k"))
		if n, _ := a.CountDeadLetters(ctx, "replay-keys"); n != 1 {
			t.Errorf("dead letters left = %d, want 1 (the older)", n)
		}
	})
}

func TestKeyBadInput(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		p, _ := fixture(t, s, "bad-keys")
		for name, opts := range map[string][]EnqueueOption{
			"empty key":             {Key("")},
			"key too long":          {Key(strings.Repeat("k", MaxKeyBytes+1))},
			"NUL in key":            {Key("a\x00b")},
			"invalid UTF-8":         {Key("a\xffb")},
			"UniqueFor without Key": {UniqueFor(time.Hour)},
			"negative UniqueFor":    {Key("k"), UniqueFor(-time.Second)},
			"zero UniqueFor":        {Key("k"), UniqueFor(0)},
		} {
			if _, err := p.Enqueue(t.Context(), 1, opts...); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s: got %v, want ErrInvalidArgument", name, err)
			}
			if _, err := p.EnqueueJobs(t.Context(), []Job{{Payload: 1, Options: opts}}); !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("%s in EnqueueJobs: got %v, want ErrInvalidArgument", name, err)
			}
		}
		if m := metrics(t, s, "bad-keys"); m.Pending != 0 {
			t.Errorf("bad enqueues inserted %d messages", m.Pending)
		}
		mustEnqueue(t, p, 1, Key(strings.Repeat("ü", MaxKeyBytes/2)))
	})
}

// TestKeyConcurrentEnqueues: goroutines on separate pools, as separate
// processes would be, enqueue the same key at once, round after round;
// exactly one message holds it, and every caller gets its ID, as a new
// message (exactly one caller) or with ErrDuplicate.
func TestKeyConcurrentEnqueues(t *testing.T) {
	t.Parallel()
	const pools, perPool, rounds = 4, 4, 5
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			stores := separateStores(t, b, pools)
			if _, err := stores[0].Admin().CreateQueue(ctx, "race"); err != nil {
				t.Fatal(err)
			}
			producers := make([]*Producer, pools*perPool)
			for i := range producers {
				p, err := stores[i%pools].Producer(ctx, "race")
				if err != nil {
					t.Fatal(err)
				}
				producers[i] = p
			}
			c, err := stores[0].Consumer(ctx, "race")
			if err != nil {
				t.Fatal(err)
			}
			for round := range rounds {
				key := fmt.Sprintf("key-%d", round)
				type result struct {
					id  int64
					dup bool
					err error
				}
				results := make([]result, len(producers))
				start := make(chan struct{})
				var wg sync.WaitGroup
				for i, p := range producers {
					wg.Go(func() {
						<-start
						if i%2 == 0 {
							id, err := p.Enqueue(ctx, i, Key(key))
							dup := errors.Is(err, ErrDuplicate)
							if dup {
								err = nil
							}
							results[i] = result{id, dup, err}
							return
						}
						res, err := p.EnqueueJobs(ctx, []Job{{Payload: i, Options: []EnqueueOption{Key(key)}}})
						if err == nil {
							results[i] = result{res[0].ID, res[0].Duplicate, nil}
						} else {
							results[i] = result{err: err}
						}
					})
				}
				close(start)
				wg.Wait()
				inserted := 0
				for i, r := range results {
					if r.err != nil {
						t.Fatalf("round %d, producer %d: %v", round, i, r.err)
					}
					if r.id != results[0].id {
						t.Errorf("round %d: producer %d got ID %d, producer 0 got %d", round, i, r.id, results[0].id)
					}
					if !r.dup {
						inserted++
					}
				}
				if inserted != 1 {
					t.Errorf("round %d: %d callers inserted, want 1", round, inserted)
				}
				msgs := mustDequeue(t, c, 100)
				if len(msgs) != 1 || msgs[0].ID != results[0].id {
					t.Fatalf("round %d: live messages %v, want [%d]", round, msgIDs(msgs), results[0].id)
				}
				// Archived, the key is free for the next round's check too.
				if err := c.Archive(ctx, msgs[0].ID); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
