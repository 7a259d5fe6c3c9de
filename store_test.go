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
	"regexp"
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
	for _, d := range allDialects {
		t.Run(string(d), func(t *testing.T) {
			impl, err := d.impl("")
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
				"isCloseNoise": impl.isCloseNoise, "isBadJSON": impl.isBadJSON, "isAuthFailed": impl.isAuthFailed,
				"readDSN": impl.readDSN, "relation": impl.relation,
			} {
				if reflect.ValueOf(f).IsNil() {
					t.Errorf("%s: hook %s is nil", d, name)
				}
			}
			if impl.driver == "" || impl.driverImport == "" || len(impl.schemes) == 0 || impl.dsnForms == "" {
				t.Errorf("%s: driver %q, import %q, schemes %q: Open cannot reach this backend", d, impl.driver, impl.driverImport, impl.schemes)
			}
		})
	}
}

func TestPostgresSchemaQualifiesEveryTable(t *testing.T) {
	t.Parallel()
	// Every table or view a migration creates must be one pgTableName
	// knows, or its statements would reach it through the search_path:
	// one pgqrs_retention in public shared by every schema.
	created := regexp.MustCompile(`(?i)\bCREATE (?:TABLE|VIEW|OR REPLACE VIEW)(?: IF NOT EXISTS)? (pgqrs_\w+)`)
	migrations, err := newPostgresDialect("").loadMigrations()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations {
		for _, c := range created.FindAllStringSubmatch(strings.Join(m.stmts, ";\n"), -1) {
			if loc := pgTableName.FindStringIndex(c[1]); loc == nil || loc[1]-loc[0] != len(c[1]) {
				t.Errorf("migration %d creates %s, which pgTableName does not qualify", m.version, c[1])
			}
		}
	}
	// "pgqrs_runs": a schema named like a table must keep its NOTIFY channel.
	for _, schema := range []string{"app", "pgqrs_runs"} {
		d := newPostgresDialect(schema)
		n := 0
		forEachSQLField(reflect.ValueOf(d).Elem(), "", func(path string, v reflect.Value) {
			text := v.String()
			for _, loc := range pgTableName.FindAllStringIndex(text, -1) {
				if strings.HasSuffix(text[:loc[0]], `'pgqrs:`) || strings.HasSuffix(text[:loc[0]], `"`) {
					continue // the channel, or the schema's own name
				}
				n++
				if !strings.HasSuffix(text[:loc[0]], `"`+schema+`".`) {
					t.Errorf("%s: %s names %s without the schema", schema, path, text[loc[0]:loc[1]])
				}
			}
			if strings.Contains(text, "pg_notify(") && !strings.Contains(text, "pg_notify('"+pgChannel(schema)+"', ") {
				t.Errorf("%s: %s notifies on another channel than the schema's (%s): %s", schema, path, pgChannel(schema), text)
			}
		})
		if n < 100 {
			t.Errorf("%s: only %d table names found; the walker is broken", schema, n)
		}
		if got, want := d.qualify("CREATE INDEX pgqrs_messages_claim ON pgqrs_messages (queue_id)"), `CREATE INDEX pgqrs_messages_claim ON "`+schema+`".pgqrs_messages (queue_id)`; got != want {
			t.Errorf("qualify touched an index name or missed the table: %s", got)
		}
		if got, want := d.qualify("DROP INDEX IF EXISTS pgqrs_messages_claim"), `DROP INDEX IF EXISTS "`+schema+`".pgqrs_messages_claim`; got != want {
			t.Errorf("qualify left a dropped index to the search_path: %s", got)
		}
		if once := d.qualify("SELECT 1 FROM pgqrs_queues"); d.qualify(once) != once {
			t.Errorf("qualifying twice changed %q to %q", once, d.qualify(once))
		}
	}
	plain := newPostgresDialect("")
	forEachSQLField(reflect.ValueOf(plain).Elem(), "", func(path string, v reflect.Value) {
		if strings.Contains(v.String(), `".pgqrs_`) {
			t.Errorf("%s names a schema in the dialect without one: %s", path, v.String())
		}
	})
	if !strings.Contains(plain.message.enqueue, "pg_notify('pgqrs', 'q' || $1::bigint)") {
		t.Errorf("enqueue without a schema does not wake queue $1 on channel pgqrs: %s", plain.message.enqueue)
	}
}

// forEachSQLField calls f for every string field of the statement groups
// (the struct-typed fields) of a dialect value. The fields are unexported,
// so f may read them (String) but not set them.
func forEachSQLField(v reflect.Value, path string, f func(path string, v reflect.Value)) {
	for i := 0; i < v.NumField(); i++ {
		field, ft := v.Field(i), v.Type().Field(i)
		if ft.Type.Kind() != reflect.Struct {
			continue
		}
		for j := 0; j < field.NumField(); j++ {
			if fj := field.Field(j); fj.Kind() == reflect.String {
				f(path+ft.Name+"."+field.Type().Field(j).Name, fj)
			}
		}
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
CREATE TRIGGER p AFTER INSERT ON a
    REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION f();
SELECT f();
`
	want := []string{
		"CREATE TABLE a (x INT);",
		"CREATE TRIGGER t AFTER UPDATE ON a\nBEGIN\n    INSERT INTO b VALUES (1);\n    DELETE FROM a WHERE x = 1;\nEND;",
		"CREATE INDEX i ON a (x);",
		"CREATE TRIGGER p AFTER INSERT ON a\n    REFERENCING NEW TABLE AS n FOR EACH STATEMENT EXECUTE FUNCTION f();",
		"SELECT f();",
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
		_, err := s.DB().ExecContext(ctx, strings.ReplaceAll(s.d.queue.insert, "RETURNING id, name, created_at, paused_at", ""), "dup")
		if !s.d.isUnique(err) || !strings.Contains(s.translate(err).Error(), errUnique.Error()) {
			t.Errorf("duplicate queue name: %v not classified as a unique violation", err)
		}
		_, err = s.DB().ExecContext(ctx, s.d.message.enqueue, 424242, `{}`, s.d.secondsArg(0), nil, nil, 0, nil, nil)
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
	for payload, want := range map[string]topic{"q7": queueWake(7), "r7": runWake(7), "7": {}, "-7": {}, "q0": {}, "r-7": {}, "q": {}, "": {}, "x7": {}, "q99999999999999999999": {}} {
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
