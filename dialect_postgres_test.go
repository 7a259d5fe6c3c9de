package pgqrs

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// planNode is the part of EXPLAIN (FORMAT JSON) output the plan tests read.
type planNode struct {
	NodeType    string     `json:"Node Type"`
	SubplanName string     `json:"Subplan Name"`
	IndexName   string     `json:"Index Name"`
	IndexCond   string     `json:"Index Cond"`
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
// after the one that fills the batch must never run.
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
		q.ID, 50, s.d.secondsArg(DefaultVisibilityTimeout), c.id).Scan(&out)
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
	arms := 0
	root.walk(func(n planNode) {
		if !strings.HasPrefix(n.SubplanName, "CTE a") {
			return
		}
		arms++
		var level int
		fmt.Sscanf(n.SubplanName, "CTE a%d", &level)
		var scan planNode
		n.walk(func(m planNode) {
			if m.NodeType == "Index Scan" || m.NodeType == "Index Only Scan" {
				scan = m
			}
		})
		if scan.IndexName != "pgqrs_messages_claim" || !strings.Contains(scan.IndexCond, fmt.Sprintf("(priority = %d)", level)) {
			t.Errorf("level %d does not read its range of the claim index: %+v", level, scan)
		}
		switch {
		case level == 0 && scan.SharedHit+scan.SharedRead > 20:
			t.Errorf("level 0 read %d pages to find no visible message among 5,000 delayed ones", scan.SharedHit+scan.SharedRead)
		case level > 5 && scan.ActualLoops != 0:
			t.Errorf("level %d ran although level 5 filled the batch", level)
		}
	})
	if arms != MaxPriority+1 {
		t.Errorf("%d priority levels in the plan, want %d: %s", arms, MaxPriority+1, out)
	}
}
