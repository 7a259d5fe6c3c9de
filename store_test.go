package pgqrs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestDialectsDefineEveryStatement fails when a dialect lacks a statement
// the others have.
func TestDialectsDefineEveryStatement(t *testing.T) {
	t.Parallel()
	for _, d := range []Dialect{Postgres, SQLite, Turso} {
		t.Run(string(d), func(t *testing.T) {
			impl, err := d.impl()
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			forEachSQLField(reflect.ValueOf(impl).Elem(), "", func(path string, v reflect.Value) {
				n++
				if strings.TrimSpace(v.String()) == "" {
					t.Errorf("%s: %s is empty", d, path)
				}
			})
			if n < 30 {
				t.Errorf("only %d statements found; the walker is broken", n)
			}
			for name, f := range map[string]any{
				"secondsArg": impl.secondsArg, "timeArg": impl.timeArg, "idsArg": impl.idsArg,
				"isUnique": impl.isUnique, "isForeignKey": impl.isForeignKey, "isBusy": impl.isBusy, "qualify": impl.qualify,
				"isCloseNoise": impl.isCloseNoise, "isBadJSON": impl.isBadJSON,
			} {
				if reflect.ValueOf(f).IsNil() {
					t.Errorf("%s: hook %s is nil", d, name)
				}
			}
		})
	}
}

func TestPostgresSchemaQualifiesEveryTable(t *testing.T) {
	t.Parallel()
	d := newPostgresDialect().withSchema("app")
	forEachSQLField(reflect.ValueOf(d).Elem(), "", func(path string, v reflect.Value) {
		for _, table := range []string{"pgqrs_queues", "pgqrs_workers", "pgqrs_messages", "pgqrs_archive", "pgqrs_schema_version"} {
			bare := strings.ReplaceAll(v.String(), `"app".`+table, "")
			if pgTableName.MatchString(bare) && strings.Contains(bare, table+" ") {
				t.Errorf("%s names %s without the schema", path, table)
			}
		}
	})
	if got := d.qualify("CREATE INDEX pgqrs_messages_claim ON pgqrs_messages (queue_id)"); got != `CREATE INDEX pgqrs_messages_claim ON "app".pgqrs_messages (queue_id)` {
		t.Errorf("qualify touched an index name or missed the table: %s", got)
	}
}

func TestSplitStatements(t *testing.T) {
	t.Parallel()
	text := `-- comment
CREATE TABLE a (x INT);

CREATE TRIGGER t AFTER UPDATE ON a
BEGIN
    INSERT INTO b VALUES (1);
    DELETE FROM a WHERE x = 1;
END;
CREATE INDEX i ON a (x);
`
	want := []string{
		"CREATE TABLE a (x INT);",
		"CREATE TRIGGER t AFTER UPDATE ON a\nBEGIN\n    INSERT INTO b VALUES (1);\n    DELETE FROM a WHERE x = 1;\nEND;",
		"CREATE INDEX i ON a (x);",
	}
	if diff := cmp.Diff(want, splitStatements(text)); diff != "" {
		t.Errorf("statements (-want +got):\n%s", diff)
	}
}

func TestMigrationsFS(t *testing.T) {
	t.Parallel()
	for _, d := range []Dialect{Postgres, SQLite, Turso} {
		fsys, err := Migrations(d)
		if err != nil {
			t.Fatal(err)
		}
		names, err := fs.Glob(fsys, "*.sql")
		if err != nil || len(names) == 0 || names[0] != "0001_core.sql" {
			t.Errorf("%s migrations = %v, %v", d, names, err)
		}
	}
	_, err := Migrations("oracle")
	wantErr(t, err, ErrInvalidArgument)
}

func TestErrorTranslation(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if _, err := s.Admin().CreateQueue(ctx, "dup"); err != nil {
			t.Fatal(err)
		}
		_, err := s.DB().ExecContext(ctx, strings.ReplaceAll(s.d.queue.insert, "RETURNING id, name, created_at", ""), "dup")
		if !s.d.isUnique(err) || !strings.Contains(s.translate(err).Error(), errUnique.Error()) {
			t.Errorf("duplicate queue name: %v not classified as a unique violation", err)
		}
		_, err = s.DB().ExecContext(ctx, s.d.message.enqueue, 424242, `{}`, s.d.secondsArg(0), nil, nil)
		if !s.d.isForeignKey(err) {
			t.Errorf("message for a missing queue: %v not classified as a foreign key violation", err)
		}
		if s.d.isBusy(err) || s.d.isUnique(nil) {
			t.Errorf("misclassified: %v", err)
		}
	})
}

// TestReadmeQuickstartIsTheExample keeps the README's quick start identical
// to examples/quickstart/main.go, which its own test compiles and runs.
func TestReadmeQuickstartIsTheExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	main, err := os.ReadFile("examples/quickstart/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+string(main)+"```") {
		t.Error("README.md's quick start differs from examples/quickstart/main.go; copy the file into the README")
	}
}

// TestOpenWithoutDriver builds a program that imports no SQLite driver: Open
// must say which import to add.
func TestOpenWithoutDriver(t *testing.T) {
	t.Parallel()
	// Stdout only: go run writes build chatter (GOFLAGS=-v prints package
	// names) to stderr.
	cmd := exec.Command("go", "run", "./testdata/nodriver")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run: %v\n%s%s", err, out, stderr.String())
	}
	want := `true pgqrs: database driver not imported: no database/sql driver "sqlite" is registered for sqlite; add: import _ "modernc.org/sqlite"`
	if got := strings.TrimSpace(string(out)); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestParseTextTimeMatchesTimeParse(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"2024-02-29T23:59:59.999Z", "1970-01-01T00:00:00.000Z", "2026-11-26T01:02:03.004Z",
		"2023-02-29T00:00:00.000Z", "2024-13-01T00:00:00.000Z", "2024-01-01T24:00:00.000Z",
		"2024-01-01 00:00:00.000Z", "2024-01-01T00:00:00.00xZ", "2024-01-01T00:00:00Z", "",
	} {
		want, err := time.Parse(textTimeLayout, s)
		got, ok := parseTextTime(s)
		if ok != (err == nil) || ok && !got.Equal(want) {
			t.Errorf("parseTextTime(%q) = %v, %v; time.Parse: %v, %v", s, got, ok, want, err)
		}
	}
}

// TestPreparedStatementsAreReleased: on Postgres a Store prepares its
// statements on the pool's connections, Close releases them, and
// WithPreparedStatements(false) prepares none (for poolers that do not keep
// prepared statements).
func TestPreparedStatementsAreReleased(t *testing.T) {
	t.Parallel()
	dsn, opts := backendDSN(t, "postgres")
	ctx := t.Context()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1) // one session, so pg_prepared_statements sees them all
	prepared := func() int {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT count(*) FROM pg_prepared_statements").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, on := range []bool{true, false} {
		s, err := New(db, Postgres, append(slices.Clone(opts), WithPreparedStatements(on))...)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Admin().Install(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Admin().ListQueues(ctx); err != nil {
			t.Fatal(err)
		}
		if n := prepared(); (n > 0) != on {
			t.Errorf("prepared statements on=%v: %d prepared", on, n)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if n := prepared(); n != 0 {
			t.Errorf("after Close: %d statements still prepared", n)
		}
	}
}

func TestPgChannelFitsEverySchemaName(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for n := 1; n <= 63; n++ {
		for _, fill := range []string{"a", "b"} {
			schema := fill + strings.Repeat("s", n-1)
			if err := validateIdent(schema); err != nil {
				t.Fatal(err)
			}
			ch := pgChannel(schema)
			if len(ch) > 63 {
				t.Errorf("schema of %d bytes: channel %q is %d bytes", n, ch, len(ch))
			}
			if other, dup := seen[ch]; dup {
				t.Errorf("schemas %q and %q share channel %q", other, schema, ch)
			}
			seen[ch] = schema
		}
	}
	// Long names that share their first 40 bytes still differ.
	a, b := strings.Repeat("x", 62)+"1", strings.Repeat("x", 62)+"2"
	if pgChannel(a) == pgChannel(b) {
		t.Errorf("%q and %q share channel %q", a, b, pgChannel(a))
	}
}

// TestLongSchemaNameIsFullyUsable: any schema name WithSchema accepts works
// for immediate enqueues (which NOTIFY), LISTEN wakeups and workflows; names
// of 58 to 63 bytes used to make every immediate enqueue fail with "channel
// name too long" (issue 10, item 6).
func TestLongSchemaNameIsFullyUsable(t *testing.T) {
	t.Parallel()
	dsn := needEnv(t, "PGQRS_TEST_POSTGRES_DSN", "PostgreSQL server")
	ctx := t.Context()
	schema := fmt.Sprintf("long_%d_", os.Getpid())
	schema += strings.Repeat("s", 63-len(schema))
	open := func() *Store {
		s, err := Open(ctx, dsn, WithSchema(schema))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := open()
	t.Cleanup(func() { s.DB().Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`) })
	if err := s.Admin().Install(ctx); err != nil {
		t.Fatal(err)
	}
	p, c := fixture(t, s, "q")
	got := make(chan int64, 4)
	idle := &eventHandler{want: "pgqrs: idle"}
	runInBackground(t, c, func(ctx context.Context, m *Message) error {
		got <- m.ID
		return nil
	}, &RunOptions{PollInterval: time.Hour, Logger: slog.New(idle)})
	await(t, 10*time.Second, "idle loop listening", func() bool { return idle.seen.Load() && s.listening.Load() })
	// Another Store's enqueue reaches this loop only through NOTIFY.
	other := open()
	op, err := other.Producer(ctx, "q")
	if err != nil {
		t.Fatal(err)
	}
	id := mustEnqueue(t, op, "now")
	select {
	case h := <-got:
		if h != id {
			t.Errorf("handled %d, want %d", h, id)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("idle Run in one Store was not woken by an enqueue in another")
	}
	if _, err := p.EnqueueBatch(ctx, []any{1, 2}); err != nil {
		t.Fatalf("batch enqueue: %v", err)
	}
	wf := NewWorkflow("long", func(ctx context.Context, run *Run, in int) (int, error) {
		return Step(ctx, run, "double", func(context.Context) (int, error) { return 2 * in, nil })
	})
	serveInBackground(t, s, wf, fastPoll)
	rid, err := wf.Trigger(ctx, s, 21)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := waitResult(t, s, wf, rid); err != nil || out != 42 {
		t.Fatalf("workflow result %d, %v; want 42", out, err)
	}
}

func TestParseTopic(t *testing.T) {
	t.Parallel()
	for payload, want := range map[string]topic{"7": queueWake(7), "-7": runWake(7), "0": {}, "": {}, "x": {}, "99999999999999999999": {}} {
		got, ok := parseTopic(payload)
		if got != want || ok != (want != topic{}) {
			t.Errorf("parseTopic(%q) = %v, %v; want %v", payload, got, ok, want)
		}
	}
}

// TestTranslateKeepsTheDriverError: a translated error still carries the
// driver's own error, for errors.As (a *pq.Error's SQLSTATE, a SQLite code).
func TestTranslateKeepsTheDriverError(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if _, err := s.Admin().CreateQueue(ctx, "dup"); err != nil {
			t.Fatal(err)
		}
		err := s.write(ctx, nil, func(ctx context.Context, q querier) error {
			_, err := q.ExecContext(ctx, s.d.queue.insert, "dup")
			return err
		})
		if !errors.Is(err, errUnique) {
			t.Fatalf("duplicate insert: %v; want errUnique", err)
		}
		var state interface{ SQLState() string }
		var code interface{ Code() int }
		switch {
		case s.Dialect() == Postgres && !(errors.As(err, &state) && state.SQLState() == "23505"):
			t.Errorf("the *pq.Error is gone from %v", err)
		case s.Dialect() == SQLite && !errors.As(err, &code):
			t.Errorf("the SQLite error is gone from %v", err)
		case s.Dialect() == Turso:
			if w, ok := err.(interface{ Unwrap() []error }); !ok || len(w.Unwrap()) != 2 {
				t.Errorf("the driver error is not wrapped in %v", err)
			}
		}
	})
}

// TestFailedRollbackIsReported: when the connection dies inside a
// transaction, the rollback fails too, and the error says so.
func TestFailedRollbackIsReported(t *testing.T) {
	t.Parallel()
	s := openBackend(t, "postgres")
	ctx := t.Context()
	killer := openBackend(t, "postgres")
	err := s.inTx(ctx, func(ctx context.Context, q querier) error {
		var pid int
		if err := q.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			return err
		}
		if _, err := killer.DB().ExecContext(ctx, "SELECT pg_terminate_backend($1)", pid); err != nil {
			return err
		}
		_, err := q.ExecContext(ctx, "SELECT 1")
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "rollback failed") {
		t.Fatalf("inTx on a killed connection: %v; want the failed rollback reported", err)
	}
}
