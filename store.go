package pgqrs

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// querier is what store code needs; *sql.DB, *sql.Tx and *sql.Conn all have it.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

var _, _, _ querier = (*sql.DB)(nil), (*sql.Tx)(nil), (*sql.Conn)(nil)

// stmtCache runs statements on the pool as prepared statements: database/sql
// prepares each once per connection and keeps it until close, so the
// database parses and plans a statement's text once rather than on every
// call (parsing was a third of a workflow run's CPU time on SQLite), and
// lib/pq sends a prepared statement in one round trip instead of two. A
// statement that fails to prepare (its tables are not installed yet) runs
// unprepared and is tried again next time.
type stmtCache struct {
	db     *sql.DB
	off    bool // run everything unprepared
	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
	closed bool
}

func (c *stmtCache) stmt(ctx context.Context, query string) *sql.Stmt {
	if c.off {
		return nil
	}
	c.mu.Lock()
	st, closed := c.stmts[query], c.closed
	c.mu.Unlock()
	if st != nil || closed {
		return st
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed { // closed meanwhile: keep nothing
		st.Close()
		return nil
	}
	if c.stmts == nil {
		c.stmts = map[string]*sql.Stmt{}
	}
	if prev := c.stmts[query]; prev != nil {
		st.Close()
		return prev
	}
	c.stmts[query] = st
	return st
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return c.db.ExecContext(ctx, query, args...)
}

func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.db.QueryContext(ctx, query, args...)
}

func (c *stmtCache) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := c.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return c.db.QueryRowContext(ctx, query, args...)
}

// close closes the prepared statements (the pool itself stays open).
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range c.stmts {
		st.Close()
	}
	c.stmts = nil
	c.closed = true
}

// check returns ErrClosed after Close.
func (s *Store) check() error {
	if s.closed.Load() {
		return ErrClosed
	}
	return nil
}

// bound applies the dialect's call timeout when ctx has no deadline.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.d.callTimeout > 0 {
		if _, ok := ctx.Deadline(); !ok {
			return context.WithTimeout(ctx, s.d.callTimeout)
		}
	}
	return ctx, func() {}
}

// write runs f, which performs one write statement on the pool, under the
// Store's write lock on single-writer backends, retrying when the database
// reports it did not apply the statement because another writer held the
// lock. A write inside a caller's transaction (tx != nil) runs once, unlocked:
// the transaction is the caller's.
func (s *Store) write(ctx context.Context, tx *sql.Tx, f func(ctx context.Context, q querier) error) error {
	if err := s.check(); err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if tx != nil {
		return s.translate(f(ctx, tx))
	}
	if s.d.serializeWrites {
		if err := s.wmu.lock(ctx); err != nil {
			return err
		}
		defer s.wmu.unlock()
	}
	return s.retryBusy(ctx, func() error { return f(ctx, s.pool) })
}

// read runs f on the pool with the dialect's deadline.
func (s *Store) read(ctx context.Context, f func(ctx context.Context, q querier) error) error {
	if err := s.check(); err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.translate(f(ctx, s.pool))
}

// writeLock serialises a Store's writes. Waiting for it ends with ctx: when
// the server stalls, writers queue here, and each must give up at its own
// deadline rather than after every writer ahead of it timed out.
type writeLock struct {
	once sync.Once
	ch   chan struct{}
}

func (l *writeLock) lock(ctx context.Context) error {
	l.once.Do(func() { l.ch = make(chan struct{}, 1) })
	select {
	case l.ch <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("waiting for the write lock: %w", ctx.Err())
	}
}

func (l *writeLock) unlock() { <-l.ch }

// retryBusy runs f again, with capped jittered backoff, while the database
// says it could not take the write lock (the statement did not apply).
func (s *Store) retryBusy(ctx context.Context, f func() error) error {
	delay := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || !s.d.isBusy(err) || attempt == 20 {
			return s.translate(err)
		}
		t := time.NewTimer(delay/2 + rand.N(delay))
		select {
		case <-ctx.Done():
			t.Stop()
			return s.translate(err)
		case <-t.C:
		}
		delay = min(2*delay, 500*time.Millisecond)
	}
}

// inTx runs f in a write transaction: the dialect's begin statement on a
// dedicated connection (BEGIN IMMEDIATE for single-writer backends), an
// ordinary transaction elsewhere.
// It commits when f returns nil and rolls back on error or panic.
func (s *Store) inTx(ctx context.Context, f func(ctx context.Context, q querier) error) (err error) {
	if err := s.check(); err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if s.d.serializeWrites {
		if err := s.wmu.lock(ctx); err != nil {
			return err
		}
		defer s.wmu.unlock()
	}
	if s.d.begin == "" {
		// A deadlock or serialization failure rolled everything back; every
		// f given to inTx can run again from the start.
		return s.retryBusy(ctx, func() error { return s.dbTx(ctx, f) })
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return s.translate(err)
	}
	defer conn.Close()
	if err := s.retryBusy(ctx, func() error {
		_, err := conn.ExecContext(ctx, s.d.begin)
		return err
	}); err != nil {
		return err
	}
	done := false
	defer func() {
		if !done {
			rerr := s.abandon(ctx, conn)
			if err != nil {
				err = withRollback(err, rerr)
			}
		}
	}()
	if err := f(ctx, conn); err != nil {
		return s.translate(err)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return s.translate(err)
	}
	done = true
	return nil
}

// cleanupTimeout bounds the ROLLBACK after a failed transaction. It runs
// when ctx may already be done, and a stalled server must not hold the
// caller: libSQL's HTTP client has no timeout of its own.
const cleanupTimeout = 5 * time.Second

// abandon rolls back the transaction open on conn under its own deadline and
// discards the connection when that fails, so that the pool never hands out
// a connection that may still be inside a transaction.
func (s *Store) abandon(ctx context.Context, conn *sql.Conn) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	_, err := conn.ExecContext(rctx, "ROLLBACK")
	if err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn })
	}
	return err
}

// openPool opens the pool [Open] configures. Where the driver's connect
// ignores its context (dialect.boundConnect), every connect runs under the
// caller's deadline instead: the caller stops waiting when ctx is done, and
// a connection that arrives later is closed.
func openPool(d Dialect, driverName, source string) (*sql.DB, error) {
	db, err := sql.Open(driverName, source)
	if err != nil {
		return nil, err
	}
	impl, err := d.impl("")
	if err != nil || !impl.boundConnect {
		return db, err
	}
	drv := db.Driver()
	db.Close() // nothing was connected yet
	var c driver.Connector = dsnConnector{drv, source}
	if dc, ok := drv.(driver.DriverContext); ok {
		if c, err = dc.OpenConnector(source); err != nil {
			return nil, err
		}
	}
	return sql.OpenDB(boundedConnector{c}), nil
}

type dsnConnector struct {
	drv driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.drv.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.drv }

// boundedConnector gives up on a connect when ctx is done.
type boundedConnector struct{ c driver.Connector }

func (b boundedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	type result struct {
		conn driver.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := b.c.Connect(ctx)
		ch <- result{conn, err}
	}()
	select {
	case r := <-ch:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func (b boundedConnector) Driver() driver.Driver { return b.c.Driver() }

// dbTx runs f in a sql.DB transaction, rolling back on error or panic. A
// rollback that fails is reported with the error that caused it.
func (s *Store) dbTx(ctx context.Context, f func(ctx context.Context, q querier) error) (err error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			tx.Rollback()
			panic(p)
		}
		if err != nil {
			err = withRollback(err, tx.Rollback())
		}
	}()
	if err = f(ctx, tx); err != nil {
		return err
	}
	return tx.Commit()
}

// withRollback adds a failed rollback to err, the error that made the
// transaction roll back. ErrTxDone is no failure: the driver or
// database/sql already ended the transaction (a cancelled ctx does that).
func withRollback(err, rerr error) error {
	if rerr == nil || errors.Is(rerr, sql.ErrTxDone) {
		return err
	}
	return fmt.Errorf("%w (and the rollback failed: %w)", err, rerr)
}

// errUnique and errForeignKey mark translated driver errors so callers can
// map them to the sentinel that fits their operation.
var (
	errUnique     = errors.New("unique constraint violated")
	errForeignKey = errors.New("foreign key constraint violated")
)

// translate is the one place driver errors become pgqrs errors.
func (s *Store) translate(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sql.ErrNoRows), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case s.d.isUnique(err):
		return fmt.Errorf("%w: %w", errUnique, err)
	case s.d.isForeignKey(err):
		return fmt.Errorf("%w: %w", errForeignKey, err)
	case s.d.isBadJSON(err):
		return fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	return err
}

// sqlState reads a Postgres SQLSTATE without importing a driver.
func sqlState(err error) string {
	var e interface{ SQLState() string }
	if errors.As(err, &e) {
		return e.SQLState()
	}
	return ""
}

// sqliteCode reads a SQLite result code without importing a driver.
func sqliteCode(err error) int {
	var e interface{ Code() int }
	if errors.As(err, &e) {
		return e.Code()
	}
	return 0
}

// dbTime scans a timestamp stored either natively (Postgres) or as text in
// the fixed UTC format (SQLite, Turso).
// dbHeaders scans a headers column (a JSON object of strings, or NULL).
type dbHeaders struct{ h map[string]string }

func (d *dbHeaders) Scan(v any) error {
	var b []byte
	switch x := v.(type) {
	case nil:
		d.h = nil
		return nil
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		return fmt.Errorf("pgqrs: cannot scan %T as headers", v)
	}
	d.h = nil
	if err := json.Unmarshal(b, &d.h); err != nil {
		return fmt.Errorf("pgqrs: headers: %w", err)
	}
	return nil
}

type dbTime struct{ t time.Time }

const textTimeLayout = "2006-01-02T15:04:05.000Z"

func (d *dbTime) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		d.t = time.Time{}
	case time.Time:
		d.t = x.UTC()
	case string:
		return d.parse(x)
	case []byte:
		return d.parse(string(x))
	default:
		return fmt.Errorf("pgqrs: cannot scan %T as a time", v)
	}
	return nil
}

func (d *dbTime) parse(s string) error {
	if t, ok := parseTextTime(s); ok {
		d.t = t
		return nil
	}
	t, err := time.Parse(textTimeLayout, s)
	if err != nil {
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return fmt.Errorf("pgqrs: cannot parse time %q", s)
		}
	}
	d.t = t.UTC()
	return nil
}

// parseTextTime parses exactly textTimeLayout, the format pgqrs writes,
// without time.Parse's interpretation of the layout (a claim scans two
// times per message). Anything else is left to time.Parse.
func parseTextTime(s string) (time.Time, bool) {
	if len(s) != len(textTimeLayout) || s[4] != '-' || s[7] != '-' || s[10] != 'T' ||
		s[13] != ':' || s[16] != ':' || s[19] != '.' || s[23] != 'Z' {
		return time.Time{}, false
	}
	ok := true
	num := func(i, j int) int {
		n := 0
		for _, c := range []byte(s[i:j]) {
			if c < '0' || c > '9' {
				ok = false
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	y, mo, d := num(0, 4), num(5, 7), num(8, 10)
	h, mi, sec, ms := num(11, 13), num(14, 16), num(17, 19), num(20, 23)
	if !ok || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 59 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), d, h, mi, sec, ms*int(time.Millisecond), time.UTC)
	if t.Day() != d { // 2024-02-30: time.Parse reports it
		return time.Time{}, false
	}
	return t, true
}

func formatTextTime(t time.Time) string { return t.UTC().Format(textTimeLayout) }

// idList renders IDs as "1,2,3" for the dialects' list arguments.
func idList(ids []int64) string {
	var b strings.Builder
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(id, 10))
	}
	return b.String()
}

// scanIDs collects the single int64 column of rows.
func scanIDs(rows *sql.Rows) ([]int64, error) {
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// hits maps the IDs a statement affected back to a result per input ID.
func hits(input, affected []int64) []bool {
	set := make(map[int64]bool, len(affected))
	for _, id := range affected {
		set[id] = true
	}
	out := make([]bool, len(input))
	for i, id := range input {
		out[i] = set[id]
	}
	return out
}

//go:embed migrations
var migrationsFS embed.FS

// Migrations returns the SQL migrations of dialect d, for users who apply
// schema changes with their own tool. Files are named NNNN_name.sql and
// must be applied in name order; statements are separated by lines ending
// in ";" (trigger bodies end at "END;"). [Admin.Install] applies the same
// files and records them in pgqrs_schema_version.
func Migrations(d Dialect) (fs.FS, error) {
	impl, err := d.impl("")
	if err != nil {
		return nil, err
	}
	return fs.Sub(migrationsFS, "migrations/"+impl.migrations)
}

type migration struct {
	version int
	name    string
	stmts   []string
}

// loadMigrations reads the dialect's embedded migrations in version order.
func (d *dialect) loadMigrations() ([]migration, error) {
	dir := "migrations/" + d.migrations
	entries, err := fs.ReadDir(migrationsFS, dir)
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("pgqrs: bad migration file name %q", e.Name())
		}
		text, err := fs.ReadFile(migrationsFS, dir+"/"+e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: e.Name(), stmts: splitStatements(d.qualify(string(text)))})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// splitStatements splits migration text into single statements (Turso's
// WebSocket transport takes one statement per call). A statement ends at a
// line ending in ";", except inside CREATE TRIGGER, which ends at "END;"
// (SQLite's trigger body) or at its EXECUTE FUNCTION line (PostgreSQL's),
// and inside CREATE [OR REPLACE] FUNCTION, which ends at "$$;".
func splitStatements(text string) []string {
	var out []string
	var cur strings.Builder
	inTrigger, inFunction := false, false
	for line := range strings.Lines(text) {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "--")) {
			continue
		}
		if cur.Len() == 0 && strings.HasPrefix(strings.ToUpper(trimmed), "CREATE TRIGGER") {
			inTrigger = true
		}
		if upper := strings.ToUpper(trimmed); cur.Len() == 0 &&
			(strings.HasPrefix(upper, "CREATE FUNCTION") || strings.HasPrefix(upper, "CREATE OR REPLACE FUNCTION")) {
			inFunction = true
		}
		cur.WriteString(line)
		end := strings.HasSuffix(trimmed, ";")
		switch {
		case inTrigger:
			end = strings.EqualFold(trimmed, "END;") || end && strings.Contains(strings.ToUpper(trimmed), "EXECUTE FUNCTION ")
		case inFunction:
			end = strings.HasSuffix(trimmed, "$$;")
		}
		if end {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
			inTrigger, inFunction = false, false
		}
	}
	if strings.TrimSpace(cur.String()) != "" {
		out = append(out, strings.TrimSpace(cur.String()))
	}
	return out
}

// newerThan reports [ErrSchemaNewer] when applied holds a migration version
// that ms, this program's migrations, lacks.
func newerThan(ms []migration, applied []int64) error {
	known := map[int64]bool{}
	for _, m := range ms {
		known[int64(m.version)] = true
	}
	for _, v := range applied {
		if !known[v] {
			return fmt.Errorf("%w: migration %04d is applied, and this pgqrs knows up to %04d", ErrSchemaNewer, v, ms[len(ms)-1].version)
		}
	}
	return nil
}

// migrate applies every migration not yet recorded, all in one write
// transaction (advisory-locked on Postgres, BEGIN IMMEDIATE elsewhere), so
// concurrent installers wait for each other and the second finds nothing to do.
// A database with migrations this program does not know is refused with
// [ErrSchemaNewer] before anything runs.
func (s *Store) migrate(ctx context.Context) error {
	return s.migrateTo(ctx, math.MaxInt)
}

// migrateTo is migrate for the migrations up to version last only (the
// upgrade tests install an older schema with it).
func (s *Store) migrateTo(ctx context.Context, last int) error {
	ms, err := s.d.loadMigrations()
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(ctx context.Context, q querier) error {
		for _, stmt := range s.d.installPrelude {
			if _, err := q.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("install: %w", err)
			}
		}
		if err := s.schema.createVersionTable(ctx, q); err != nil {
			return fmt.Errorf("install: create version table: %w", err)
		}
		applied := map[int64]bool{}
		ids, err := s.schema.applied(ctx, q)
		if err != nil {
			return fmt.Errorf("install: read versions: %w", err)
		}
		for _, v := range ids {
			applied[v] = true
		}
		if err := newerThan(ms, ids); err != nil {
			return fmt.Errorf("install: %w", err)
		}
		for _, m := range ms {
			if applied[int64(m.version)] || m.version > last {
				continue
			}
			for _, stmt := range m.stmts {
				if _, err := q.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("install: migration %s: %w", m.name, err)
				}
			}
			if err := s.schema.record(ctx, q, m.version, m.name); err != nil {
				return fmt.Errorf("install: record %s: %w", m.name, err)
			}
		}
		return nil
	})
}
