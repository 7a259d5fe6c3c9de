package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pgqrs/pgqrs-go"

	_ "github.com/lib/pq"
	_ "github.com/tursodatabase/libsql-client-go/libsql"
	_ "modernc.org/sqlite"
)

// testBackends are the subtests of the floor's tests, as in the command's.
var testBackends = []string{"sqlite", "postgres", "turso-http", "turso-ws"}

// testBencher returns a bencher on the named backend with the floor's table
// set up: a fresh SQLite file, a fresh Postgres schema (dropped at the end),
// or the shared sqld (the floor only touches its own rows, deleted at the
// end).
func testBencher(t *testing.T, name string) *bencher {
	t.Helper()
	need := func(env, what string) string {
		v := os.Getenv(env)
		if v == "" {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is not set: CI needs a real %s", env, what)
			}
			t.Skipf("set %s to run against %s (make test starts one)", env, what)
		}
		return v
	}
	var dsn, schema string
	switch name {
	case "sqlite":
		dsn = "sqlite:" + filepath.Join(t.TempDir(), "floor.db")
	case "postgres":
		dsn = need("PGQRS_TEST_POSTGRES_DSN", "PostgreSQL server")
		schema = fmt.Sprintf("bench_floor_%d", os.Getpid())
	default:
		dsn = need("PGQRS_TEST_TURSO_URL", "libSQL server (sqld)")
		if name == "turso-ws" {
			dsn = "ws" + strings.TrimPrefix(dsn, "http")
		}
	}
	var opts []pgqrs.Option
	if schema != "" {
		opts = append(opts, pgqrs.WithSchema(schema))
	}
	ctx := t.Context()
	s, err := pgqrs.Open(ctx, dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if schema != "" {
			if _, err := s.DB().Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`); err != nil {
				t.Errorf("drop schema: %v", err)
			}
		}
		s.Close()
	})
	if err := s.Admin().Install(ctx); err != nil {
		t.Fatal(err)
	}
	b := &bencher{s: s, dsn: dsn, schema: schema, backend: backendLabel(s.Dialect(), dsn),
		prefix: fmt.Sprintf("%stest-%d-%s-", queuePrefix, os.Getpid(), name)}
	if err := b.floorSetup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.floorCleanup(context.WithoutCancel(t.Context()))
		if err := s.Admin().DeleteQueue(context.WithoutCancel(t.Context()), b.prefix+"floor"); err != nil {
			t.Errorf("delete the floor's queue: %v", err)
		}
	})
	return b
}

// TestFloorIsACorrectQueue holds the floor to what makes it a fair
// comparison: its claim leases the oldest visible messages to one consumer
// with a read count, skips leased and archived ones, and its archive
// settles only the holding consumer's messages, once.
func TestFloorIsACorrectQueue(t *testing.T) {
	for _, name := range testBackends {
		t.Run(name, func(t *testing.T) {
			b := testBencher(t, name)
			ctx := t.Context()
			db, q := b.s.DB(), b.floorStatements()
			payloads, _ := json.Marshal([]json.RawMessage{jobPayload(0), jobPayload(1), jobPayload(2)})
			if _, err := db.ExecContext(ctx, q.fill, b.floorID, string(payloads)); err != nil {
				t.Fatal(err)
			}
			claim := func(n int, consumer int64) []int64 {
				t.Helper()
				rows, err := db.QueryContext(ctx, q.claim, b.floorID, n, consumer)
				if err != nil {
					t.Fatalf("claim: %v", err)
				}
				defer rows.Close()
				var ids []int64
				for rows.Next() {
					var id int64
					var payload string
					if err := rows.Scan(&id, &payload); err != nil {
						t.Fatal(err)
					}
					ids = append(ids, id)
				}
				if err := rows.Err(); err != nil {
					t.Fatal(err)
				}
				slices.Sort(ids)
				return ids
			}
			archive := func(ids []int64, consumer int64) int64 {
				t.Helper()
				res, err := db.ExecContext(ctx, q.archive, q.ids(ids), consumer)
				if err != nil {
					t.Fatalf("archive: %v", err)
				}
				n, err := res.RowsAffected()
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
			table := q.tables[0] // the live one
			expire := `UPDATE ` + table + ` SET vt = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 minute')`
			if b.s.Dialect() == pgqrs.Postgres {
				table = b.pgTable(table)
				expire = `UPDATE ` + table + ` SET vt = now() - interval '1 minute'`
			}
			readCount := func(id int64) int {
				t.Helper()
				var n int
				if err := db.QueryRowContext(ctx, `SELECT read_ct FROM `+table+` WHERE id = `+fmt.Sprint(id)).Scan(&n); err != nil {
					t.Fatal(err)
				}
				return n
			}

			first := claim(2, 1)
			if len(first) != 2 {
				t.Fatalf("consumer 1 claimed %v, want 2 messages", first)
			}
			second := claim(5, 2)
			if len(second) != 1 || slices.Contains(first, second[0]) || second[0] < first[1] {
				t.Fatalf("consumer 2 claimed %v after consumer 1's %v, want the one newer message", second, first)
			}
			if got := claim(5, 3); len(got) != 0 {
				t.Fatalf("claimed %v while every message is leased", got)
			}
			if got := readCount(first[0]); got != 1 {
				t.Errorf("read count %d after one claim, want 1", got)
			}
			if n := archive(first, 2); n != 0 {
				t.Errorf("consumer 2 archived %d of consumer 1's messages, want 0", n)
			}
			if n := archive(first, 1); n != 2 {
				t.Errorf("consumer 1 archived %d of its 2 messages", n)
			}
			if n := archive(first, 1); n != 0 {
				t.Errorf("archived %d messages a second time, want 0", n)
			}
			// Every lease expires: only the unarchived message comes back.
			if _, err := db.ExecContext(ctx, expire); err != nil {
				t.Fatal(err)
			}
			if got := claim(5, 3); !slices.Equal(got, second) {
				t.Fatalf("after the leases expired, claimed %v, want %v (archived ones stay archived)", got, second)
			}
			if got := readCount(second[0]); got != 2 {
				t.Errorf("read count %d after two claims, want 2", got)
			}
			if n := archive(second, 2); n != 0 {
				t.Errorf("consumer 2 archived %d messages after its lease moved to consumer 3, want 0", n)
			}
			if n := archive(second, 3); n != 1 {
				t.Errorf("consumer 3 archived %d of its 1 message", n)
			}
		})
	}
}

// TestFloorClaimPlanSQLite: the claim's sub-select is served by the partial
// index alone, as docs/benchmarks.md says; otherwise the floor would not be
// the cheapest design.
func TestFloorClaimPlanSQLite(t *testing.T) {
	b := testBencher(t, "sqlite")
	rows, err := b.s.DB().QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+b.floorStatements().claim, b.floorID, 50, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if !strings.Contains(text, "USING COVERING INDEX pgqrs_bench_floor_inplace_live") || strings.Contains(text, "TEMP B-TREE") {
		t.Errorf("claim plan does not use the covering partial index without a sort:\n%s", text)
	}
}
