package pgqrs

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPostgresGroupedClaimIsFlat checks the claim of a queue with 10,000
// key groups of 10 messages each, at the start, after half the messages
// were processed, and near the end: the claim is the plain claim (a grouped
// queue without other limits takes it), its one index scan reads exactly
// the batch (the blocked messages of every group are parked past the claim
// range: no scan of blocked groups) however far the drain has gone.
func TestPostgresGroupedClaimIsFlat(t *testing.T) {
	t.Parallel()
	s := openBackend(t, "postgres")
	ctx := t.Context()
	if err := s.Admin().Install(ctx); err != nil {
		t.Fatal(err)
	}
	q, err := s.Admin().CreateQueue(ctx, "groups")
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Consumer(ctx, "groups")
	if err != nil {
		t.Fatal(err)
	}
	// Message s of every group, then s+1: the park trigger runs for each
	// row, as for an enqueue with Group.
	if _, err := s.DB().ExecContext(ctx, s.d.qualify(`
INSERT INTO pgqrs_messages (queue_id, payload, vt, group_key)
SELECT $1, '{}', now(), 'g' || g FROM generate_series(0, 9) AS seq, generate_series(0, 9999) AS g
ORDER BY seq, g`), q.ID); err != nil {
		t.Fatal(err)
	}
	plan := func(when string) {
		t.Helper()
		// As autovacuum would (the table's scale factors are 2%): a claim
		// moves a message's entry out of the range and leaves a dead one
		// behind, on any queue, grouped or not, until vacuum removes it.
		if _, err := s.DB().ExecContext(ctx, s.d.qualify(`VACUUM ANALYZE pgqrs_messages`)); err != nil {
			t.Fatal(err)
		}
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var out string
		err = tx.QueryRowContext(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+s.d.message.dequeue,
			q.ID, 50, s.d.secondsArg(DefaultVisibilityTimeout), c.id, nil).Scan(&out)
		if err != nil {
			t.Fatal(err)
		}
		var plans []struct {
			Plan planNode `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) != 1 {
			t.Fatalf("cannot read the plan (%v): %s", err, out)
		}
		root := plans[0].Plan
		if root.ActualRows != 50 {
			t.Errorf("%s: the claim took %d messages, want 50", when, root.ActualRows)
		}
		var scans []planNode
		root.walk(func(n planNode) {
			// (A bitmap scan of the primary key for the batch's IDs is fine.)
			if n.NodeType == "Seq Scan" || n.NodeType == "Sort" ||
				n.NodeType == "Bitmap Heap Scan" && !strings.Contains(n.RecheckCond, "id = ANY") {
				t.Errorf("%s: the claim plans a %s: %s", when, n.NodeType, out)
			}
			if n.NodeType == "Index Scan" && n.IndexName == "pgqrs_messages_claim" {
				scans = append(scans, n)
			}
		})
		if len(scans) != 1 || !strings.Contains(scans[0].IndexCond, "vt <= now()") {
			t.Fatalf("%s: want one range scan of the claim index: %s", when, out)
		}
		scan := scans[0]
		pages := scan.SharedHit + scan.SharedRead
		t.Logf("%s: index scan read %d rows in %d loop(s), %d index pages", when, scan.ActualRows, scan.ActualLoops, pages)
		if scan.ActualRows != 50 {
			t.Errorf("%s: the index scan read %d rows for a batch of 50: blocked messages were walked", when, scan.ActualRows)
		}
		// Pages are logged, not bounded: a concurrent test's open
		// transaction can hold back the vacuum, leaving dead entries the scan
		// steps over (about 7 pages when the vacuum ran).
		_ = pages
	}
	plan("10,000 groups × 10, none processed")
	drain := func(n int) {
		t.Helper()
		for done := 0; done < n; {
			msgs := mustDequeue(t, c, 1000)
			if len(msgs) == 0 {
				t.Fatalf("nothing to claim after %d of %d", done, n)
			}
			if _, err := c.ArchiveBatch(ctx, msgIDs(msgs)); err != nil {
				t.Fatal(err)
			}
			done += len(msgs)
		}
	}
	drain(50_000)
	plan("half processed")
	drain(40_000)
	plan("90% processed")
}

// TestPostgresClaimFloorsSkipTheDeadHead checks the claim of a backlogged
// queue after 20,000 of its messages were claimed and archived without a
// vacuum (autovacuum visits a table at most once a minute): their dead
// entries sit at the head of the claim index's range. A consumer's claim
// from its floors reads a few pages and takes the oldest messages left;
// the same claim from the start of the range walks every dead entry.
func TestPostgresClaimFloorsSkipTheDeadHead(t *testing.T) {
	t.Parallel()
	s := openBackend(t, "postgres")
	ctx := t.Context()
	if err := s.Admin().Install(ctx); err != nil {
		t.Fatal(err)
	}
	q, err := s.Admin().CreateQueue(ctx, "floors")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, s.d.qualify(`ALTER TABLE pgqrs_messages SET (autovacuum_enabled = false)`)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, s.d.qualify(`
INSERT INTO pgqrs_messages (queue_id, payload, vt)
SELECT $1, '{}', now() - interval '1 hour' + g * interval '1 ms' FROM generate_series(1, 30000) AS g`), q.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, s.d.qualify(`ANALYZE pgqrs_messages`)); err != nil {
		t.Fatal(err)
	}
	c, err := s.Consumer(ctx, "floors")
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	for done := 0; done < 20_000; {
		msgs := mustDequeue(t, c, 500)
		if len(msgs) != 500 {
			t.Fatalf("claimed %d of 500 after %d", len(msgs), done)
		}
		if _, err := c.ArchiveBatch(ctx, msgIDs(msgs)); err != nil {
			t.Fatal(err)
		}
		done += len(msgs)
		last = msgs[len(msgs)-1].ID
	}
	floors := c.floors.peek()
	if floors == nil || floors[0].IsZero() {
		t.Fatalf("no floor at level 0 after 20,000 claims: %v", floors)
	}
	scan := func(floors *claimFloors) int {
		t.Helper()
		tx, err := s.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		var out string
		err = tx.QueryRowContext(ctx, "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "+s.d.message.dequeue,
			q.ID, 50, s.d.secondsArg(DefaultVisibilityTimeout), c.id, s.messages.floorsArg(floors)).Scan(&out)
		if err != nil {
			t.Fatal(err)
		}
		var plans []struct {
			Plan planNode `json:"Plan"`
		}
		if err := json.Unmarshal([]byte(out), &plans); err != nil || len(plans) != 1 {
			t.Fatalf("cannot read the plan (%v): %s", err, out)
		}
		var scans []planNode
		plans[0].Plan.walk(func(n planNode) {
			if n.NodeType == "Seq Scan" || n.NodeType == "Sort" {
				t.Errorf("the claim plans a %s: %s", n.NodeType, out)
			}
			if n.NodeType == "Index Scan" && n.IndexName == "pgqrs_messages_claim" {
				scans = append(scans, n)
			}
		})
		if len(scans) != 1 || scans[0].ActualRows != 50 {
			t.Fatalf("want one claim index scan of 50 rows: %s", out)
		}
		if floors != nil && !strings.Contains(scans[0].IndexCond, "vt >=") {
			t.Errorf("the floor is not an index condition: %q", scans[0].IndexCond)
		}
		return scans[0].SharedHit + scans[0].SharedRead
	}
	withFloors := scan(floors)
	fromStart := scan(nil)
	t.Logf("claim of 50 after 20,000 claimed and archived, no vacuum: %d pages from the floors, %d from the start of the range", withFloors, fromStart)
	// The next claim takes the oldest messages left.
	if msgs := mustDequeue(t, c, 50); len(msgs) != 50 || msgs[0].ID != last+1 {
		t.Errorf("the next claim took %d messages from %v, want 50 from %d", len(msgs), msgIDs(msgs[:min(len(msgs), 1)]), last+1)
	}
	if withFloors > 20 {
		t.Errorf("the claim from the floors read %d pages; the dead entries before them must cost none", withFloors)
	}
	if fromStart < 5*withFloors {
		t.Errorf("the claim from the start read %d pages, from the floors %d: the test no longer shows a dead head", fromStart, withFloors)
	}
}
