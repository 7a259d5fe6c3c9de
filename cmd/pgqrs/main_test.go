package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// bin is the pgqrs binary built by TestMain; the tests run it as a
// subprocess, end to end.
var bin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pgqrs-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, "temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "pgqrs")
	// Without -race: a race-enabled binary sleeps a second at every exit,
	// and modernc SQLite slows down tenfold. TestDemoInProcess runs the
	// concurrent code under the race detector instead.
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// result is what one run of the binary did.
type result struct {
	stdout, stderr string
	code           int
}

// runBin runs the binary with args in dir ("" for the test's working
// directory), with stdin as its input and without $PGQRS_DSN unless env
// sets it.
func runBin(t *testing.T, dir, stdin string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, dsnEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run pgqrs %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// backend is one database the tests point the binary at.
type backend struct {
	t      *testing.T
	name   string
	global []string // --dsn and, on Postgres, --schema
}

// backendNames are the subtests every end-to-end test runs.
var backendNames = []string{"sqlite", "postgres", "turso-http", "turso-ws"}

var schemaSeq atomic.Int64

// needEnv returns the variable's value; without it a local run skips and a
// CI run (CI=true) fails.
func needEnv(t *testing.T, name, what string) string {
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

// newBackend returns an empty database of the named backend: a fresh SQLite
// file, a fresh Postgres schema (dropped at the end) or a wiped sqld.
func newBackend(t *testing.T, name string) *backend {
	t.Helper()
	b := &backend{t: t, name: name}
	switch name {
	case "sqlite":
		b.global = []string{"--dsn", "sqlite:" + filepath.Join(t.TempDir(), "test.db")}
	case "postgres":
		dsn := needEnv(t, "PGQRS_TEST_POSTGRES_DSN", "PostgreSQL server")
		schema := fmt.Sprintf("cli_%d_%d", os.Getpid(), schemaSeq.Add(1))
		t.Cleanup(func() { dropSchema(t, dsn, schema) })
		b.global = []string{"--dsn", dsn, "--schema", schema}
	case "turso-http", "turso-ws":
		dsn := needEnv(t, "PGQRS_TEST_TURSO_URL", "libSQL server (sqld)")
		if name == "turso-ws" {
			dsn = "ws" + strings.TrimPrefix(dsn, "http")
		}
		wipeTurso(t, dsn)
		b.global = []string{"--dsn", dsn}
	default:
		t.Fatalf("unknown backend %q", name)
	}
	return b
}

func dropSchema(t *testing.T, dsn, schema string) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
		return
	}
	defer db.Close()
	if _, err := db.Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`); err != nil {
		t.Errorf("drop schema %s: %v", schema, err)
	}
}

// wipeTurso drops pgqrs's tables: one sqld serves every test, as in the
// root package's tests.
func wipeTurso(t *testing.T, dsn string) {
	t.Helper()
	db, err := sql.Open("libsql", dsn)
	if err != nil {
		t.Fatalf("open sqld: %v", err)
	}
	defer db.Close()
	// Views first: pgqrs_run_ends, and pgqrs_archive where the schema
	// archives in place (a table before SQLite migration 0003).
	for _, view := range []string{"pgqrs_run_ends", "pgqrs_archive"} {
		var n int
		if err := db.QueryRow("SELECT count(*) FROM sqlite_master WHERE type = 'view' AND name = ?", view).Scan(&n); err != nil {
			t.Fatalf("wipe %s: %v", view, err)
		}
		if n == 0 {
			continue
		}
		if _, err := db.Exec("DROP VIEW " + view); err != nil {
			t.Fatalf("wipe %s: %v", view, err)
		}
	}
	for _, table := range []string{"pgqrs_retention", "pgqrs_schedules", "pgqrs_signals", "pgqrs_signal_waits", "pgqrs_events", "pgqrs_steps", "pgqrs_runs", "pgqrs_workflows", "pgqrs_archive", "pgqrs_messages", "pgqrs_workers", "pgqrs_queues", "pgqrs_schema_version"} {
		if _, err := db.ExecContext(t.Context(), "DROP TABLE IF EXISTS "+table); err != nil {
			t.Fatalf("wipe %s: %v", table, err)
		}
	}
}

// forEachBackend runs f as a subtest on every backend, with the schema
// installed.
func forEachBackend(t *testing.T, f func(t *testing.T, b *backend)) {
	t.Helper()
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, name)
			b.ok("install")
			f(t, b)
		})
	}
}

// run runs pgqrs with the backend's global flags, then args.
func (b *backend) run(stdin string, args ...string) result {
	b.t.Helper()
	return runBin(b.t, "", stdin, nil, append(append([]string{}, b.global...), args...)...)
}

// ok runs pgqrs and fails the test unless it exits 0; it returns stdout.
func (b *backend) ok(args ...string) string {
	b.t.Helper()
	r := b.run("", args...)
	if r.code != 0 {
		b.t.Fatalf("pgqrs %s: exit %d, stderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// json runs pgqrs --json args, requires exit 0 and decodes stdout into v.
func (b *backend) json(v any, args ...string) {
	b.t.Helper()
	out := b.ok(append([]string{"--json"}, args...)...)
	reflect.ValueOf(v).Elem().SetZero() // decode afresh, not merged into a reused map
	if err := json.Unmarshal([]byte(out), v); err != nil {
		b.t.Fatalf("pgqrs --json %s: %v; stdout:\n%s", strings.Join(args, " "), err, out)
	}
}

// fails runs pgqrs, requires exit status code and an error line on stderr
// containing want, and returns that line.
func (b *backend) fails(code int, want string, args ...string) string {
	b.t.Helper()
	r := b.run("", args...)
	checkFailure(b.t, r, code, want, args)
	return r.stderr
}

// checkFailure requires the exit status code, nothing on stdout, and one
// "pgqrs: " line on stderr containing want.
func checkFailure(t *testing.T, r result, code int, want string, args []string) {
	t.Helper()
	cmdline := strings.Join(args, " ")
	if r.code != code {
		t.Errorf("pgqrs %s: exit %d, want %d; stderr: %s", cmdline, r.code, code, r.stderr)
	}
	if r.stdout != "" {
		t.Errorf("pgqrs %s: stdout %q, want nothing", cmdline, r.stdout)
	}
	if !strings.HasPrefix(r.stderr, "pgqrs: ") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("pgqrs %s: stderr %q, want one line starting \"pgqrs: \"", cmdline, r.stderr)
	}
	if !strings.Contains(r.stderr, want) {
		t.Errorf("pgqrs %s: stderr %q does not contain %q", cmdline, r.stderr, want)
	}
}

func TestUsageErrors(t *testing.T) {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "usage.db")
	tests := []struct {
		args  []string
		stdin string
		want  string // in the error line
	}{
		{nil, "", "no command given"},
		{[]string{"frobnicate"}, "", `unknown command "frobnicate"`},
		{[]string{"queue"}, "", "queue: missing subcommand: want one of create, list, delete, purge"},
		{[]string{"queue", "frob"}, "", `queue: unknown subcommand "frob"`},
		{[]string{"--bogus", "queue", "list"}, "", "flag provided but not defined: -bogus"},
		{[]string{"queue", "list", "--bogus"}, "", "flag provided but not defined: -bogus"},
		{[]string{"queue", "list", "--json"}, "", "--json is a global flag: put it before the command"},
		{[]string{"queue", "create"}, "", "queue create: missing argument: want NAME"},
		{[]string{"queue", "create", "a", "b"}, "", `queue create: unexpected argument "b"`},
		{[]string{"queue", "create", "bad name!"}, "", "invalid name"},
		{[]string{"send"}, "", "send: missing argument"},
		{[]string{"send", "q", "{bad"}, "", "send: payload is not valid JSON"},
		{[]string{"send", "q", "-"}, "not json", "send: payload is not valid JSON"},
		{[]string{"send", "q", "-"}, "{} {}", "send: payload is not valid JSON"},
		{[]string{"send", "q", "-"}, "  \n", "send: empty payload"},
		{[]string{"send", "q", "{}", "--delay", "-1s"}, "", "--delay must not be negative, got -1s"},
		{[]string{"send", "q", "{}", "--delay", "soon"}, "", `invalid value "soon" for flag -delay`},
		{[]string{"send", "q", "{}", "--count", "0"}, "", "--count must be at least 1"},
		{[]string{"recv", "q", "--vt", "-5s"}, "", "--vt must be positive, got -5s"},
		{[]string{"recv", "q", "--batch", "0"}, "", "--batch must be at least 1"},
		{[]string{"--timeout", "-1s", "queue", "list"}, "", "--timeout must not be negative"},
		{[]string{"archive", "list", "q", "--limit", "0"}, "", "--limit must be at least 1"},
		{[]string{"dlq", "replay", "q"}, "", "dlq replay: missing argument: give message IDs or --all"},
		{[]string{"dlq", "replay", "q", "1", "--all"}, "", "give message IDs or --all, not both"},
		{[]string{"dlq", "replay", "q", "abc"}, "", `"abc" is not a message ID`},
		{[]string{"workers", "health", "--stale", "-1s"}, "", "--stale must be positive"},
		{[]string{"workers", "reclaim", "--stale", "0s"}, "", "--stale must be positive"},
		{[]string{"workers", "purge", "--older-than", "-1h"}, "", "--older-than must not be negative"},
		{[]string{"demo", "--messages", "0"}, "", "--messages must be at least 1"},
		{[]string{"--schema", "s1", "queue", "list"}, "", "WithSchema is only supported on postgres"},
		{[]string{"help", "nope"}, "", `unknown command "nope"`},
	}
	for _, tt := range tests {
		args := append([]string{"--dsn", dsn}, tt.args...)
		checkFailure(t, runBin(t, "", tt.stdin, nil, args...), 2, tt.want, args)
	}
}

// TestCommandFlags: every command parses its own flags and only those. An
// unknown flag, or another command's, is a usage error (exit 2) naming the
// command and the flag; "COMMAND -h" lists exactly the command's flags.
func TestCommandFlags(t *testing.T) {
	dsn := "sqlite:" + filepath.Join(t.TempDir(), "flags.db")
	// Every flag any command declares, by command.
	own := map[string][]string{}
	all := map[string]bool{}
	global := flag.NewFlagSet("pgqrs", flag.ContinueOnError)
	new(cli).globalFlags(global)
	for _, cmd := range commands() {
		fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
		cmd.setup(new(cli), fs)
		fs.VisitAll(func(f *flag.Flag) {
			own[cmd.name] = append(own[cmd.name], f.Name)
			if global.Lookup(f.Name) == nil { // a global name after the command gets its own hint
				all[f.Name] = true
			}
		})
	}
	others := slices.Sorted(maps.Keys(all))
	// A few commands' flags as docs/cli.md lists them.
	for name, want := range map[string][]string{
		"send": {"count", "delay", "group", "header", "key", "priority", "unique-for"}, "recv": {"archive", "batch", "vt"}, "queue list": nil,
		"archive list": {"before", "limit"}, "workers reclaim": {"stale"}, "workflow purge": {"older-than"},
	} {
		if got := own[name]; !slices.Equal(got, want) {
			t.Errorf("%s declares flags %v, want %v", name, got, want)
		}
	}
	for _, cmd := range commands() {
		words := strings.Fields(cmd.name)
		args := append([]string{"--dsn", dsn}, append(slices.Clone(words), "--no-such-flag")...)
		checkFailure(t, runBin(t, "", "", nil, args...), 2, cmd.name+": flag provided but not defined: -no-such-flag", args)

		// A flag of another command is unknown here too.
		for _, name := range others {
			if slices.Contains(own[cmd.name], name) {
				continue
			}
			args := append([]string{"--dsn", dsn}, append(slices.Clone(words), "--"+name, "1")...)
			checkFailure(t, runBin(t, "", "", nil, args...), 2, cmd.name+": flag provided but not defined: -"+name, args)
			break // the first foreign flag in name order: one per command
		}

		r := runBin(t, "", "", nil, append(slices.Clone(words), "-h")...)
		if r.code != 0 {
			t.Errorf("pgqrs %s -h: exit %d, stderr %q", cmd.name, r.code, r.stderr)
			continue
		}
		listed := map[string]bool{}
		for _, line := range strings.Split(r.stdout, "\n") {
			if name, ok := strings.CutPrefix(strings.TrimSpace(line), "--"); ok {
				listed[strings.Fields(name)[0]] = true
			}
		}
		for _, name := range own[cmd.name] {
			if !listed[name] {
				t.Errorf("pgqrs %s -h does not list its flag --%s:\n%s", cmd.name, name, r.stdout)
			}
		}
		for name := range listed {
			if !slices.Contains(own[cmd.name], name) {
				t.Errorf("pgqrs %s -h lists --%s, which is not its flag:\n%s", cmd.name, name, r.stdout)
			}
		}
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}, {"help", "send"}, {"send", "-h"}, {"dlq", "replay", "--help"}} {
		r := runBin(t, "", "", nil, args...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: pgqrs") || r.stderr != "" {
			t.Errorf("pgqrs %s: exit %d, stdout %.40q, stderr %q; want 0 and usage on stdout", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	// Help shows the DSN's source, never the value of $PGQRS_DSN.
	r := runBin(t, "", "", []string{dsnEnv + "=postgres://u:hunter2secret@db/x"}, "help")
	if strings.Contains(r.stdout, "hunter2secret") {
		t.Errorf("help prints the password of $%s:\n%s", dsnEnv, r.stdout)
	}
}

func TestVersion(t *testing.T) {
	r := runBin(t, "", "", nil, "version")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "pgqrs ") || !strings.Contains(r.stdout, " go1.") {
		t.Errorf("pgqrs version: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	r = runBin(t, "", "", nil, "--json", "version")
	var v struct{ Version, Go string }
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version == "" || !strings.HasPrefix(v.Go, "go1.") {
		t.Errorf("pgqrs --json version: %v, got %+v from %q", err, v, r.stdout)
	}
}

func TestBadDSN(t *testing.T) {
	const password, token = "s3cretPassw0rd", "supersecrettoken123"
	tests := []struct {
		dsn  string
		code int
		want string
	}{
		{"nope://x", 2, `invalid DSN: unknown scheme "nope"`},
		{"no-scheme-at-all", 2, "invalid DSN"},
		{"postgres://alice:" + password + "@127.0.0.1:1/db?sslmode=disable", 1, "database unreachable: postgres://alice:***@127.0.0.1:1/db"},
		{"http://127.0.0.1:1?authToken=" + token, 1, "database unreachable: http://127.0.0.1:1"},
		// The Unix-socket form: a valid DSN, nobody listening.
		{"postgres://alice:" + password + "@/app?host=/nonexistent", 1, "database unreachable: postgres://alice:***@/app"},
		{"host=/nonexistent user=alice password=" + password + " dbname=app", 1, "database unreachable: host=/nonexistent port=5432 dbname=app user=alice"},
		// DSNs that do not parse: exit 2, and never the input.
		{"postgres://u:" + password + "@127.0.0.1:notaport/db", 2, "invalid DSN: postgres://u:***@127.0.0.1:notaport/db: cannot parse URL: invalid port"},
		{"postgres://u:" + password + "%zz@127.0.0.1/db", 2, "invalid DSN: postgres://u:***@127.0.0.1/db: cannot parse URL: a % escape"},
		{"postgres://u:" + password + "@[::1/db", 2, "invalid DSN: postgres://u:***@[::1/db: cannot parse URL: unclosed ["},
		{"host=/tmp password='" + password, 2, "invalid DSN: (key=value DSN): unterminated quoted string"},
		{"host=/tmp password=" + password + " junk", 2, `invalid DSN: (key=value DSN): missing "=" after "…"`},
		{"libsql://[::1?authToken=" + token, 2, "invalid DSN: libsql://[::1?…: cannot parse URL"},
	}
	for _, tt := range tests {
		for _, args := range [][]string{{"--dsn", tt.dsn, "queue", "list"}, {"--dsn", tt.dsn, "demo"}} {
			r := runBin(t, "", "", nil, args...)
			checkFailure(t, r, tt.code, tt.want, args)
			if strings.Contains(r.stderr, password) || strings.Contains(r.stderr, token) {
				t.Errorf("pgqrs %s: stderr shows a secret: %s", strings.Join(args, " "), r.stderr)
			}
		}
	}
	// The same through $PGQRS_DSN.
	r := runBin(t, "", "", []string{dsnEnv + "=postgres://alice:" + password + "@127.0.0.1:1/db"}, "metrics")
	checkFailure(t, r, 1, "database unreachable", []string{"metrics"})
	if strings.Contains(r.stderr, password) {
		t.Errorf("stderr shows the password: %s", r.stderr)
	}
}

// TestAuthFailedExit: a refused login exits 3 with a message that says so
// and never shows the password (the test cluster asks roles other than
// postgres for their password over TCP).
func TestAuthFailedExit(t *testing.T) {
	admin := needEnv(t, "PGQRS_TEST_POSTGRES_DSN", "PostgreSQL server")
	db, err := sql.Open("postgres", admin)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	role := fmt.Sprintf("pgqrs_cli_auth_%d", os.Getpid())
	if _, err := db.Exec(`CREATE ROLE ` + role + ` LOGIN PASSWORD 'the-right-one'`); err != nil {
		t.Fatal(err)
	}
	defer db.Exec(`DROP ROLE ` + role)
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatal(err)
	}
	const wrong = "Wr0ngPassw0rd-xyz"
	u.User = url.UserPassword(role, wrong)
	for _, args := range [][]string{{"--dsn", u.String(), "queue", "list"}, {"--dsn", u.String(), "demo"}} {
		r := runBin(t, "", "", nil, args...)
		checkFailure(t, r, 3, "authentication failed: postgres://"+role+":***@", args)
		if strings.Contains(r.stderr, wrong) {
			t.Errorf("stderr shows the password: %s", r.stderr)
		}
	}
}

// TestDefaultDSN checks the DSN's fallbacks: $PGQRS_DSN, else pgqrs.db in
// the working directory.
func TestDefaultDSN(t *testing.T) {
	dir := t.TempDir()
	if r := runBin(t, dir, "", nil, "install"); r.code != 0 {
		t.Fatalf("install: exit %d, stderr %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "pgqrs.db")); err != nil {
		t.Errorf("install without --dsn: %v", err)
	}
	env := []string{dsnEnv + "=sqlite:from-env.db"}
	if r := runBin(t, dir, "", env, "install"); r.code != 0 {
		t.Fatalf("install: exit %d, stderr %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "from-env.db")); err != nil {
		t.Errorf("install with $%s: %v", dsnEnv, err)
	}
	// --dsn wins over the environment.
	if r := runBin(t, dir, "", env, "--dsn", "sqlite:from-flag.db", "install"); r.code != 0 {
		t.Fatalf("install: exit %d, stderr %s", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "from-flag.db")); err != nil {
		t.Errorf("install with --dsn: %v", err)
	}
}

func TestTimeout(t *testing.T) {
	b := newBackend(t, "sqlite")
	b.ok("install")
	b.fails(1, "timed out after 1ns; raise --timeout", "--timeout", "1ns", "queue", "list")
	b.ok("--timeout", "0", "queue", "list") // 0: no deadline
}
