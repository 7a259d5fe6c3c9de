package pgqrs

import (
	"encoding/json"
	"strings"
	"testing"
)

// planNode is the part of EXPLAIN (FORMAT JSON) output the plan tests read.
type planNode struct {
	NodeType    string     `json:"Node Type"`
	SubplanName string     `json:"Subplan Name"`
	IndexName   string     `json:"Index Name"`
	IndexCond   string     `json:"Index Cond"`
	RecheckCond string     `json:"Recheck Cond"`
	ActualLoops int        `json:"Actual Loops"`
	ActualRows  int        `json:"Actual Rows"`
	SharedHit   int        `json:"Shared Hit Blocks"`
	SharedRead  int        `json:"Shared Read Blocks"`
	Plans       []planNode `json:"Plans"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// TestPostgresClaimReadsOneRangePerPriority checks the claim's plan under
// real statistics: 5,000 delayed messages wait at priority 0 and the visible
// ones at priority 5. Each priority level must be an ordered range scan of
// the claim index (no sequential scan, no sort); the delayed messages at
// level 0 must cost a few index pages, not a walk past them; and the levels
// after the one that fills the batch must never be read.
func TestPostgresClaimReadsOneRangePerPriority(t *testing.T) {
	t.Parallel()
	s := openBackend(t, "postgres")
	ctx := t.Context()
	if err := s.Admin().Install(ctx); err != nil {
		t.Fatal(err)
	}
	q, err := s.Admin().CreateQueue(ctx, "plan")
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Consumer(ctx, "plan")
	if err != nil {
		t.Fatal(err)
	}
	for _, stmt := range []string{
		`INSERT INTO pgqrs_messages (queue_id, payload, vt, priority)
		 SELECT $1, '{}', now() + interval '1 day', 0 FROM generate_series(1, 5000)`,
		`INSERT INTO pgqrs_messages (queue_id, payload, vt, priority)
		 SELECT $1, '{}', now() - interval '1 minute', 5 FROM generate_series(1, 500)`,
	} {
		if _, err := s.DB().ExecContext(ctx, s.d.qualify(stmt), q.ID); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.DB().ExecContext(ctx, s.d.qualify(`ANALYZE pgqrs_messages`)); err != nil {
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
	root.walk(func(n planNode) {
		if n.NodeType == "Seq Scan" || n.NodeType == "Sort" || n.NodeType == "Bitmap Heap Scan" {
			t.Errorf("the claim plans a %s: %s", n.NodeType, out)
		}
	})
	if root.ActualRows != 50 {
		t.Errorf("the claim took %d messages, want 50", root.ActualRows)
	}
	// One parameterised range scan of the claim index, run once per level
	// from 0 until the batch is full: levels 0 to 5 here, never 6 to 9.
	var scans []planNode
	root.walk(func(n planNode) {
		if n.NodeType == "Index Scan" && n.IndexName == "pgqrs_messages_claim" {
			scans = append(scans, n)
		}
	})
	if len(scans) != 1 {
		t.Fatalf("%d scans of the claim index, want 1 (per level, in a loop): %s", len(scans), out)
	}
	scan := scans[0]
	if !strings.Contains(scan.IndexCond, "priority = ") || !strings.Contains(scan.IndexCond, "vt <= now()") {
		t.Errorf("the claim index scan's condition is %q, want priority and vt in it", scan.IndexCond)
	}
	if scan.ActualLoops != 6 {
		t.Errorf("the claim read %d priority levels, want 6 (0 to 5, where the batch filled)", scan.ActualLoops)
	}
	if pages := scan.SharedHit + scan.SharedRead; pages > 40 {
		t.Errorf("the claim read %d index pages; 5,000 delayed messages at level 0 must cost a few", pages)
	}
}
