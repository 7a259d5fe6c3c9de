package pgqrs

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestSQLitePlansSkipTheArchive checks the plans SQLite (and sqld) choose
// for the statements about pgqrs_messages, which since migration 0003 also
// holds the archived rows: the claim reads only the covering claim index,
// and no statement walks the whole table except the few admin reads that
// count or purge the archive (which has no per-queue index; see
// newSQLiteDialect). Statements are planned with every argument bound to 1
// (so "dead = ?" plans for dead letters).
func TestSQLitePlansSkipTheArchive(t *testing.T) {
	scans := map[string]bool{ // allowed to read every row
		"admin.orphans":         true, // Verify: every message and archived message
		"queue.purgeArchive":    true, // a queue's whole archive
		"admin.queueMetrics":    true, // the archive counted in one pass
		"admin.allQueueMetrics": true,
		"admin.systemStats":     true,
		// Retention walks from the oldest ID and stops at its batch
		// (retentionSQL): an index on archived_at would cost every archive.
		"retention.expireArchived": true,
		// The dashboard's throughput: the archive by ID, newest first, up
		// to its scan limit of the queue's rows (as archive.list walks a
		// queue's non-dead archive).
		"admin.throughput": true,
	}
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			s := openBackend(t, b)
			if s.d.migrations != "sqlite" {
				t.Skipf("%s plans are not SQLite's", b)
			}
			ctx := t.Context()
			if err := s.Admin().Install(ctx); err != nil {
				t.Fatal(err)
			}
			n := 0
			forEachSQLField(reflect.ValueOf(s.d).Elem(), "", func(path string, v reflect.Value) {
				query := v.String()
				if !strings.Contains(query, "pgqrs_messages") && !strings.Contains(query, "pgqrs_archive") {
					return
				}
				n++
				var args []any
				for i := 1; strings.Contains(query, fmt.Sprintf("?%d", i)); i++ {
					args = append(args, 1)
				}
				rows, err := s.DB().QueryContext(ctx, "EXPLAIN QUERY PLAN "+query, args...)
				if err != nil {
					t.Errorf("%s: %v", path, err)
					return
				}
				defer rows.Close()
				var plan []string
				for rows.Next() {
					var id, parent, unused int
					var detail string
					if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
						t.Fatalf("%s: %v", path, err)
					}
					plan = append(plan, detail)
					if (detail == "SCAN pgqrs_messages" || detail == "SCAN m") && !scans[path] {
						t.Errorf("%s reads every row of pgqrs_messages: %s", path, strings.Join(plan, " | "))
					}
				}
				if err := rows.Err(); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				if path == "message.dequeue" {
					// One ordered range of the covering claim index per
					// priority level, and no sort: each arm stops at the batch.
					joined := strings.Join(plan, " | ")
					// (The floors of dequeue bound the range from below too.)
					want := "SEARCH pgqrs_messages USING COVERING INDEX pgqrs_messages_claim (queue_id=? AND priority=? AND archived_at=? AND vt>? AND vt<?)"
					if got := strings.Count(joined, want); got != MaxPriority+1 || strings.Contains(joined, "TEMP B-TREE") {
						t.Errorf("the claim does not read one range of the covering claim index per priority (%d of %d) without sorting: %s",
							got, MaxPriority+1, joined)
					}
				}
			})
			if n < 30 {
				t.Errorf("only %d statements about messages planned; the walk is broken", n)
			}
		})
	}
}
