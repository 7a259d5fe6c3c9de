package pgqrs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/lib/pq"
	_ "github.com/tursodatabase/libsql-client-go/libsql"
	_ "modernc.org/sqlite"
)

// backends are the subtests every behaviour runs on.
// backends are the subtests every behaviour test runs on. "pgbouncer" is the
// Postgres cluster reached through PgBouncer in transaction pooling mode (as
// scripts/services.sh starts it): no prepared statements, LISTEN over a
// direct DSN.
var backends = []string{"sqlite", "postgres", "pgbouncer", "turso-http", "turso-ws"}

var schemaSeq atomic.Int64

// needEnv returns the variable's value; without it a local run skips and a
// CI run (CI=true) fails.
func needEnv(t testing.TB, name, what string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is not set: CI needs a real %s (make test starts one)", name, what)
		}
		t.Skipf("set %s to run against %s (make test starts one)", name, what)
	}
	return v
}

// openBackend opens a Store on an isolated, empty database of the backend:
// a fresh SQLite file, a fresh Postgres schema, or a wiped sqld database.
func openBackend(t testing.TB, backend string, opts ...Option) *Store {
	t.Helper()
	dsn, extra := backendDSN(t, backend)
	s, err := Open(context.Background(), dsn, append(extra, opts...)...)
	if err != nil {
		t.Fatalf("open %s: %v", backend, err)
	}
	t.Cleanup(func() { s.Close() })
	if strings.HasPrefix(backend, "turso") {
		wipeTurso(t, s)
	}
	return s
}

// separateStores opens n Stores, each with a pool of its own as separate
// processes would have, on one fresh database of the backend, and installs
// the schema once.
func separateStores(t *testing.T, backend string, n int) []*Store {
	t.Helper()
	dsn, opts := backendDSN(t, backend)
	stores := make([]*Store, n)
	for i := range stores {
		s, err := Open(t.Context(), dsn, opts...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	if strings.HasPrefix(backend, "turso") {
		wipeTurso(t, stores[0])
	}
	if err := stores[0].Admin().Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	return stores
}

// backendDSN returns a DSN and options for a fresh database of the backend,
// dropped again when the test ends.
func backendDSN(t testing.TB, backend string) (string, []Option) {
	t.Helper()
	switch backend {
	case "sqlite":
		return "sqlite:" + t.TempDir() + "/test.db", nil
	case "postgres", "pgbouncer":
		dsn := needEnv(t, "PGQRS_TEST_POSTGRES_DSN", "PostgreSQL server")
		schema := fmt.Sprintf("t%d_%d", os.Getpid(), schemaSeq.Add(1))
		t.Cleanup(func() {
			s, err := Open(context.Background(), dsn)
			if err != nil {
				t.Errorf("drop schema: %v", err)
				return
			}
			defer s.Close()
			if _, err := s.DB().Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`); err != nil {
				t.Errorf("drop schema %s: %v", schema, err)
			}
		})
		if backend == "pgbouncer" {
			bouncer := needEnv(t, "PGQRS_TEST_PGBOUNCER_DSN", "PgBouncer")
			return bouncer, []Option{WithSchema(schema), WithPreparedStatements(false), WithListenDSN(dsn)}
		}
		return dsn, []Option{WithSchema(schema)}
	case "turso-http", "turso-ws":
		dsn := leaseTurso(t)
		if backend == "turso-ws" {
			dsn = "ws" + strings.TrimPrefix(dsn, "http")
		}
		return dsn, nil
	}
	t.Fatalf("unknown backend %q", backend)
	return "", nil
}

// tursoPool is the channel of sqld servers tests lease, filled once from
// PGQRS_TEST_TURSO_URLS (comma-separated; scripts/services.sh starts a pool)
// or else PGQRS_TEST_TURSO_URL alone (then Turso tests take turns).
var tursoPool = sync.OnceValue(func() chan string {
	var urls []string
	for u := range strings.SplitSeq(os.Getenv("PGQRS_TEST_TURSO_URLS"), ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) == 0 && os.Getenv("PGQRS_TEST_TURSO_URL") != "" {
		urls = []string{os.Getenv("PGQRS_TEST_TURSO_URL")}
	}
	pool := make(chan string, len(urls))
	for _, u := range urls {
		pool <- u
	}
	return pool
})

// leaseTurso returns the URL of a sqld server that is the test's alone
// until it ends: one database per server, so Turso tests can run in
// parallel and still wipe the database they get. Call t.Parallel before
// leasing, never after: a paused test must not hold a server.
func leaseTurso(t testing.TB) string {
	t.Helper()
	pool := tursoPool()
	if cap(pool) == 0 {
		needEnv(t, "PGQRS_TEST_TURSO_URL", "libSQL server (sqld)")
	}
	select {
	case u := <-pool:
		t.Cleanup(func() { pool <- u })
		return u
	case <-t.Context().Done():
		t.Fatalf("no sqld server of PGQRS_TEST_TURSO_URLS became free: %v", t.Context().Err())
		return ""
	}
}

// wipeTurso drops pgqrs's tables: a leased sqld server still holds the
// previous test's database.
func wipeTurso(t testing.TB, s *Store) {
	t.Helper()
	// Views first: pgqrs_run_ends, and pgqrs_archive where the schema
	// archives in place (a table before SQLite migration 0003).
	for _, view := range []string{"pgqrs_run_ends", "pgqrs_archive"} {
		var n int
		if err := s.DB().QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name = ?", view).Scan(&n); err != nil {
			t.Fatalf("wipe %s: %v", view, err)
		}
		if n == 0 {
			continue
		}
		if _, err := s.DB().Exec("DROP VIEW " + view); err != nil {
			t.Fatalf("wipe %s: %v", view, err)
		}
	}
	for _, table := range []string{"pgqrs_retention", "pgqrs_schedules", "pgqrs_signals", "pgqrs_signal_waits", "pgqrs_events", "pgqrs_steps", "pgqrs_runs", "pgqrs_workflows", "pgqrs_archive", "pgqrs_messages", "pgqrs_workers", "pgqrs_queues", "pgqrs_schema_version"} {
		if _, err := s.DB().Exec("DROP TABLE IF EXISTS " + table); err != nil {
			t.Fatalf("wipe %s: %v", table, err)
		}
	}
}

// forEachBackend runs f as a subtest on every backend with an installed
// store. The subtests run in parallel with each other (and, when the test
// itself called t.Parallel, with other parallel tests): each has a database
// of its own. A test whose f touches process-wide state (slog's default
// logger) or asserts a timing window of a few hundred milliseconds uses
// forEachBackendSerial.
func forEachBackend(t *testing.T, f func(t *testing.T, s *Store)) {
	t.Helper()
	eachBackend(t, true, f)
}

// forEachBackendSerial is forEachBackend with the subtests run one after
// another.
func forEachBackendSerial(t *testing.T, f func(t *testing.T, s *Store)) {
	t.Helper()
	eachBackend(t, false, f)
}

func eachBackend(t *testing.T, parallel bool, f func(t *testing.T, s *Store)) {
	t.Helper()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			s := openBackend(t, b)
			if err := s.Admin().Install(t.Context()); err != nil {
				t.Fatalf("install: %v", err)
			}
			f(t, s)
		})
	}
}

// fixture creates queue and returns a producer and a consumer on it.
func fixture(t *testing.T, s *Store, queue string) (*Producer, *Consumer) {
	t.Helper()
	ctx := t.Context()
	if _, err := s.Admin().CreateQueue(ctx, queue); err != nil {
		t.Fatalf("create queue: %v", err)
	}
	p, err := s.Producer(ctx, queue)
	if err != nil {
		t.Fatalf("producer: %v", err)
	}
	c, err := s.Consumer(ctx, queue)
	if err != nil {
		t.Fatalf("consumer: %v", err)
	}
	return p, c
}

func mustEnqueue(t *testing.T, p *Producer, payload any, opts ...EnqueueOption) int64 {
	t.Helper()
	id, err := p.Enqueue(t.Context(), payload, opts...)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return id
}

func mustDequeue(t *testing.T, c *Consumer, n int, opts ...DequeueOption) []*Message {
	t.Helper()
	msgs, err := c.Dequeue(t.Context(), n, opts...)
	if err != nil {
		t.Fatalf("dequeue: %v", err)
	}
	return msgs
}

// awaitDequeue polls until the consumer claims at least one message or the
// deadline passes.
func awaitDequeue(t *testing.T, c *Consumer, n int, within time.Duration, opts ...DequeueOption) []*Message {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		msgs := mustDequeue(t, c, n, opts...)
		if len(msgs) > 0 {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message became visible within %v", within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

func metrics(t *testing.T, s *Store, queue string) QueueMetrics {
	t.Helper()
	m, err := s.Admin().QueueMetrics(t.Context(), queue)
	if err != nil {
		t.Fatalf("metrics: %v", err)
	}
	return m
}

func fmtErr(format string, args ...any) error { return fmt.Errorf(format, args...) }
