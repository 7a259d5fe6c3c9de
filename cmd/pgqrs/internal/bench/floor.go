package bench

// The floor: the drain written directly in SQL with the same driver, pool,
// prepared statements and write serialisation as pgqrs, and no pgqrs code:
// the cheapest correct queue measured on each backend (docs/benchmarks.md).
// A claim leases up to n visible messages to one consumer, oldest first (vt
// and read_ct as in pgqrs); an archive settles the rows that consumer still
// holds, once, and reports how many. The claim and the archive are one
// statement each, as in pgqrs, so drain ÷ floor measures what the library
// and its schema add on top of the cheapest design the database allows.
// The designs differ per backend: SQLite and Turso archive in place
// (floor_sqlite.go), Postgres moves rows to an archive table
// (floor_postgres.go).

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// floorSQL is one backend's floor statements.
type floorSQL struct {
	design  string   // the result rows' mode: "in-place" or "archive-table"
	setup   []string // idempotent DDL
	tables  []string // the floor's tables, the live one first; vacuumed after a purge on Postgres
	purge   []string // (queue) delete the queue's rows
	fill    string   // (queue, JSON array of payloads)
	analyze string   // run after a fill ("" for none)
	claim   string   // (queue, n, consumer) → id, payload
	archive string   // (ids, consumer): archives the consumer's leased rows
	ids     func(ids []int64) any
	// serialize: writes go one at a time through a mutex, as pgqrs does on
	// single-writer backends, so the floor never waits in a busy handler.
	serialize bool
}

// floorStatements returns the floor of the bench's backend: floor_postgres.go
// on Postgres, floor_sqlite.go on SQLite and Turso.
func (b *bencher) floorStatements() floorSQL {
	if b.s.Dialect() == pgqrs.Postgres {
		return b.pgFloor()
	}
	return sqliteFloor()
}

// floorSetup creates the floor tables if they are missing, and this
// invocation's "floor" queue, whose ID marks its floor rows.
func (b *bencher) floorSetup(ctx context.Context) error {
	for _, stmt := range b.floorStatements().setup {
		if _, err := b.s.DB().ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	q, err := b.s.Admin().CreateQueue(ctx, b.prefix+"floor")
	if err != nil {
		return err
	}
	b.floorID = q.ID
	return nil
}

// floorPurge deletes this invocation's floor rows.
func (b *bencher) floorPurge(ctx context.Context) error {
	q := b.floorStatements()
	for _, stmt := range q.purge {
		if _, err := b.s.DB().ExecContext(ctx, stmt, b.floorID); err != nil {
			return fmt.Errorf("purge floor: %w", err)
		}
	}
	for _, t := range q.tables {
		if err := b.vacuum(ctx, t); err != nil {
			return err
		}
	}
	return nil
}

// floorCleanup deletes this invocation's floor rows, best effort.
func (b *bencher) floorCleanup(ctx context.Context) {
	if b.floorID != 0 {
		_ = b.floorPurge(ctx)
	}
}

// floor prefills the floor table and drains it with consumers goroutines,
// each looping claim(batch) → archive in raw SQL.
func (b *bencher) floor(ctx context.Context, consumers, batch int) (*Result, error) {
	n := b.flags.backlog
	label := fmt.Sprintf("floor %d×%d", consumers, batch)
	db := b.s.DB()
	q := b.floorStatements()
	if err := b.floorPurge(ctx); err != nil {
		return nil, err
	}
	b.logf("%s: prefilling %d messages", label, n)
	fillStart := time.Now()
	for i := 0; i < n; i += fillChunk {
		chunk := make([]json.RawMessage, 0, fillChunk)
		for j := i; j < min(n, i+fillChunk); j++ {
			chunk = append(chunk, jobPayload(j))
		}
		data, err := json.Marshal(chunk)
		if err != nil {
			return nil, err
		}
		if _, err := db.ExecContext(ctx, q.fill, b.floorID, string(data)); err != nil {
			return nil, fmt.Errorf("prefill: %w", err)
		}
	}
	if q.analyze != "" {
		if _, err := db.ExecContext(ctx, q.analyze); err != nil {
			return nil, err
		}
	}
	fillTime := time.Since(fillStart)
	// Prepared where pgqrs prepares its statements (not on Turso), so the
	// ratio compares like with like.
	claimSQL, archiveSQL := stmtRunner{db: db, query: q.claim}, stmtRunner{db: db, query: q.archive}
	if !strings.HasPrefix(b.backend, "turso") {
		for _, r := range []*stmtRunner{&claimSQL, &archiveSQL} {
			var err error
			if r.st, err = db.PrepareContext(ctx, r.query); err != nil {
				return nil, err
			}
			defer r.st.Close()
		}
	}
	var wmu sync.Mutex
	lock := func() func() {
		if !q.serialize {
			return func() {}
		}
		wmu.Lock()
		return wmu.Unlock
	}
	st, err := b.runDrain(ctx, label, drainLoop{
		n: n, consumers: consumers,
		claim: func(ctx context.Context, i int) ([]int64, error) {
			defer lock()()
			rows, err := claimSQL.QueryContext(ctx, b.floorID, batch, i+1)
			if err != nil {
				return nil, err
			}
			defer rows.Close()
			ids := make([]int64, 0, batch)
			for rows.Next() {
				var id int64
				var payload sql.RawBytes
				if err := rows.Scan(&id, &payload); err != nil {
					return nil, err
				}
				ids = append(ids, id)
			}
			return ids, rows.Err()
		},
		archive: func(ctx context.Context, i int, ids []int64) (int, error) {
			defer lock()()
			res, err := archiveSQL.ExecContext(ctx, q.ids(ids), i+1)
			if err != nil {
				return 0, err
			}
			n, err := res.RowsAffected()
			return int(n), err
		},
	})
	if err != nil {
		return nil, err
	}
	r := b.result("floor")
	r.Mode = q.design
	r.Consumers, r.Batch, r.Backlog = consumers, batch, n
	r.FillSeconds = fillTime.Seconds()
	st.fill(r)
	b.logf("%s: %d messages in %.2fs: %.0f msgs/s", label, st.done, st.elapsed.Seconds(), r.MsgsPerSec)
	return r, nil
}

// stmtRunner runs query as a prepared statement when st is set.
type stmtRunner struct {
	db    *sql.DB
	query string
	st    *sql.Stmt
}

func (r stmtRunner) QueryContext(ctx context.Context, args ...any) (*sql.Rows, error) {
	if r.st != nil {
		return r.st.QueryContext(ctx, args...)
	}
	return r.db.QueryContext(ctx, r.query, args...)
}

func (r stmtRunner) ExecContext(ctx context.Context, args ...any) (sql.Result, error) {
	if r.st != nil {
		return r.st.ExecContext(ctx, args...)
	}
	return r.db.ExecContext(ctx, r.query, args...)
}
