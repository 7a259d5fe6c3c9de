// Command pgqrs administers and inspects pgqrs queues and workflow runs on
// PostgreSQL, SQLite and Turso/libSQL, and runs a self-contained demo.
//
// Usage:
//
//	pgqrs [--dsn DSN] [--schema NAME] [--json] [--timeout 30s] COMMAND [ARGS]
//
// The DSN comes from --dsn, else from the PGQRS_DSN environment variable,
// else it is "sqlite:pgqrs.db" (an SQLite file in the current directory).
// Run "pgqrs help" for the list of commands; docs/cli.md is the reference.
//
// Exit status: 0 on success, 1 when an operation fails, 2 for a usage error
// (unknown command or flag, missing or malformed argument). Errors are one
// line on stderr, starting with "pgqrs: ".
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/cmd/pgqrs/internal/bench"

	_ "github.com/lib/pq"
	_ "github.com/tursodatabase/libsql-client-go/libsql"
	_ "modernc.org/sqlite"
)

// defaultDSN is the database used without --dsn and PGQRS_DSN: an embedded
// SQLite file in the current directory, so nothing needs to be set up.
const defaultDSN = "sqlite:pgqrs.db"

// dsnEnv names the environment variable that supplies the DSN.
const dsnEnv = "PGQRS_DSN"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	c := &cli{
		stdin:       os.Stdin,
		stdout:      os.Stdout,
		stderr:      os.Stderr,
		getenv:      os.Getenv,
		stdinTTY:    isTerminal(os.Stdin),
		stdoutTTY:   isTerminal(os.Stdout),
		interrupted: ctx.Done(),
	}
	code := c.main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}

// isTerminal reports whether f is a character device (a terminal), not a
// pipe or a file.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// cli is one invocation of the command: its I/O, its flags and, once a
// command needs it, the Store.
type cli struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
	stdinTTY       bool            // stdin is a terminal: never wait on it for a payload
	stdoutTTY      bool            // stdout is a terminal: progress may rewrite its line
	interrupted    <-chan struct{} // closed on SIGINT or SIGTERM

	// Global flags.
	dsn     string
	schema  string
	json    bool
	timeout time.Duration

	store *pgqrs.Store // opened by open on first use, closed by main
}

// command is one entry of the command table.
type command struct {
	name    string // "queue create": one or two words
	args    string // positional arguments, for usage
	summary string
	minArgs int
	maxArgs int // -1: no limit
	// setup declares the command's own flags on fs and returns the function
	// that runs the command with their values once fs is parsed. The values
	// live in that function alone: no command sees another's flags.
	setup     func(c *cli, fs *flag.FlagSet) runFunc
	noTimeout bool // --timeout does not apply (demo, bench)
}

// runFunc runs a command with its positional arguments.
type runFunc func(ctx context.Context, args []string) error

// noFlags is the setup of a command without flags of its own.
func noFlags(run func(c *cli, ctx context.Context, args []string) error) func(*cli, *flag.FlagSet) runFunc {
	return func(c *cli, _ *flag.FlagSet) runFunc {
		return func(ctx context.Context, args []string) error { return run(c, ctx, args) }
	}
}

// commands returns the command table, in the order "pgqrs help" lists it.
func commands() []command {
	return []command{
		{name: "install", summary: "create or upgrade the pgqrs tables (idempotent)", setup: noFlags((*cli).install)},
		{name: "verify", summary: "check that every table, index and migration is in place", setup: noFlags((*cli).verify)},
		{name: "recount", summary: "count live messages and the archive again, for the metrics (PostgreSQL; writes wait meanwhile)", setup: noFlags((*cli).recount)},
		{name: "version", summary: "print the pgqrs and Go versions", setup: noFlags((*cli).version)},
		{name: "queue create", args: "NAME", summary: "create a queue", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).queueCreate)},
		{name: "queue list", summary: "list queues", setup: noFlags((*cli).queueList)},
		{name: "queue delete", args: "NAME", summary: "delete an empty queue", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).queueDelete)},
		{name: "queue purge", args: "NAME", summary: "delete every message of a queue: live, archived and dead", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).queuePurge)},
		{name: "queue pause", args: "NAME", summary: "stop every consumer of a queue claiming from it (enqueue still works)", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).queuePause)},
		{name: "queue resume", args: "NAME", summary: "let the consumers of a paused queue claim again", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).queueResume)},
		{name: "queue retention", args: "NAME", summary: "show or set how long a queue keeps archived messages and dead letters", minArgs: 1, maxArgs: 1, setup: queueRetentionCommand},
		{name: "queue limit", args: "NAME", summary: "show or change a queue's flow control: --max-in-flight N, --per-group N, --rate N/PERIOD, --none", minArgs: 1, maxArgs: 1, setup: queueLimitCommand},
		{name: "send", args: "QUEUE [JSON | -]", summary: "enqueue a JSON payload (from stdin with -) and print the new IDs", minArgs: 1, maxArgs: 2, setup: sendCommand},
		{name: "recv", args: "QUEUE", summary: "claim visible messages and print them", minArgs: 1, maxArgs: 1, setup: recvCommand},
		{name: "cancel", args: "QUEUE ID...", summary: "cancel live messages: they move to the archive, marked cancelled", minArgs: 2, maxArgs: -1, setup: noFlags((*cli).cancel)},
		{name: "metrics", args: "[QUEUE]", summary: "message counts per state, for one queue or all (--prometheus: the text exposition format)", maxArgs: 1, setup: metricsCommand},
		{name: "archive list", args: "QUEUE", summary: "list archived (processed) messages, newest (highest ID) first", minArgs: 1, maxArgs: 1, setup: archiveListCommand},
		{name: "archive expire", args: "[QUEUE]", summary: "delete archived messages and dead letters older than an age, for one queue or all", maxArgs: 1, setup: archiveExpireCommand},
		{name: "dlq list", args: "QUEUE", summary: "list dead letters with their last error, newest (highest ID) first", minArgs: 1, maxArgs: 1, setup: dlqListCommand},
		{name: "dlq replay", args: "QUEUE (ID... | --all)", summary: "put dead letters back in the queue", minArgs: 1, maxArgs: -1, setup: dlqReplayCommand},
		{name: "dlq purge", args: "QUEUE", summary: "delete every dead letter of a queue", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).dlqPurge)},
		{name: "workers list", args: "[QUEUE]", summary: "list registered producers and consumers", maxArgs: 1, setup: workersListCommand},
		{name: "workers health", args: "[QUEUE]", summary: "count workers by state, and stale consumers", maxArgs: 1, setup: workersHealthCommand},
		{name: "workers reclaim", summary: "stop stale consumers and release their messages", setup: workersReclaimCommand},
		{name: "workers stop", args: "ID", summary: "mark a worker stopped and release the messages it holds", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).workersStop)},
		{name: "workers purge", summary: "delete long-stopped workers", setup: workersPurgeCommand},
		{name: "workflow list", summary: "list registered workflows with their run counts per status", setup: noFlags((*cli).workflowList)},
		{name: "workflow runs", summary: "list workflow runs, newest first", setup: workflowRunsCommand},
		{name: "workflow show", args: "RUN_ID", summary: "show a run with its input, result and steps", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).workflowShow)},
		{name: "workflow send", args: "RUN_ID TOPIC JSON", summary: "send a signal to a run: its next Recv of TOPIC receives JSON", minArgs: 3, maxArgs: 3, setup: noFlags((*cli).workflowSend)},
		{name: "workflow cancel", args: "RUN_ID", summary: "cancel a run; a running one stops at its next step", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).workflowCancel)},
		{name: "workflow resume", args: "RUN_ID", summary: "continue a paused run now", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).workflowResume)},
		{name: "workflow retry", args: "RUN_ID", summary: "run a failed run again from its failed step", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).workflowRetry)},
		{name: "workflow purge", args: "NAME", summary: "delete a workflow's runs that finished long ago, with their steps", minArgs: 1, maxArgs: 1, setup: workflowPurgeCommand},
		{name: "workflow delete", args: "NAME", summary: "delete a workflow whose runs have all finished, with its runs and queue", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).workflowDelete)},
		{name: "schedule add", args: "NAME", summary: "create or redefine a periodic schedule (--cron, and --queue or --workflow)", minArgs: 1, maxArgs: 1, setup: scheduleAddCommand},
		{name: "schedule list", summary: "list schedules with their next and last runs", setup: noFlags((*cli).scheduleList)},
		{name: "schedule pause", args: "NAME", summary: "stop a schedule firing until resumed", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).schedulePause)},
		{name: "schedule resume", args: "NAME", summary: "let a paused schedule fire again, from its next occurrence", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).scheduleResume)},
		{name: "schedule delete", args: "NAME", summary: "delete a schedule", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).scheduleDelete)},
		{name: "schedule run", args: "NAME", summary: "enqueue one occurrence of a schedule now", minArgs: 1, maxArgs: 1, setup: noFlags((*cli).scheduleRun)},
		{name: "demo", summary: "run producers and consumers on a demo queue, with retries and dead letters", setup: demoCommand, noTimeout: true},
		{name: "ui", summary: "serve the web dashboard on a local port (read-only unless --allow-actions)", setup: uiCommand, noTimeout: true},
		{name: "bench", summary: "measure throughput and latency on one backend, against a raw-SQL floor", setup: benchCommand, noTimeout: true},
	}
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct {
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// main runs the command line args and returns the exit status.
func (c *cli) main(ctx context.Context, args []string) int {
	err := c.dispatch(ctx, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		err = nil
	case err != nil && !errors.Is(err, pgqrs.ErrSchema): // verify explains itself
		err = c.explain(ctx, err)
	}
	if c.store != nil {
		// The command's work is committed or rolled back by now, so a failure
		// to close the pool changes nothing the user asked for. The process
		// exit closes what is left.
		_ = c.store.Close()
	}
	if err == nil {
		return 0
	}
	fmt.Fprintln(c.stderr, "pgqrs: "+oneLine(err.Error()))
	return exitCode(err)
}

// dispatch parses the global flags, finds the command and runs it.
func (c *cli) dispatch(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("pgqrs", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.globalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.stdout)
			return err
		}
		return usagef("%v (run \"pgqrs help\" for usage)", err)
	}
	if err := nonNegative("--timeout", c.timeout); err != nil {
		return err
	}
	if c.dsn == "" {
		c.dsn = cmp.Or(c.getenv(dsnEnv), defaultDSN)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usagef("no command given (run \"pgqrs help\" for the list)")
	}
	if rest[0] == "help" {
		return c.help(rest[1:])
	}
	cmd, rest, err := lookup(rest)
	if err != nil {
		return err
	}
	cfs := flag.NewFlagSet("pgqrs "+cmd.name, flag.ContinueOnError)
	cfs.SetOutput(io.Discard)
	run := cmd.setup(c, cfs)
	pos, err := parseInterleaved(cfs, rest)
	if errors.Is(err, flag.ErrHelp) {
		c.commandUsage(c.stdout, cmd, cfs)
		return err
	}
	if err != nil {
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok && fs.Lookup(name) != nil {
			return usagef("--%s is a global flag: put it before the command, as in \"pgqrs --%s ... %s\"", name, name, cmd.name)
		}
		return usagef("%s: %v (run \"pgqrs help %s\" for usage)", cmd.name, err, cmd.name)
	}
	switch {
	case len(pos) < cmd.minArgs:
		return usagef("%s: missing argument: want %s (run \"pgqrs help %s\" for usage)", cmd.name, cmd.args, cmd.name)
	case cmd.maxArgs >= 0 && len(pos) > cmd.maxArgs:
		return usagef("%s: unexpected argument %q (run \"pgqrs help %s\" for usage)", cmd.name, pos[cmd.maxArgs], cmd.name)
	}
	if c.timeout > 0 && !cmd.noTimeout {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	err = run(ctx, pos)
	// Ask the context, not err: some errors carry their cause as text only.
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w (timed out after %v; raise --timeout)", err, c.timeout)
	}
	return err
}

// globalFlags registers the flags that come before the command. The DSN's
// fallbacks are applied after parsing, so that help never prints the value
// of $PGQRS_DSN, which may hold a password.
func (c *cli) globalFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.dsn, "dsn", "", "database `DSN` (default: $"+dsnEnv+", else "+defaultDSN+")")
	fs.StringVar(&c.schema, "schema", "", "PostgreSQL `NAME`: the schema holding the pgqrs tables (created by install)")
	fs.BoolVar(&c.json, "json", false, "print one JSON document instead of tables")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "overall deadline of the command (0: none; not applied to demo)")
}

// lookup finds the command named by the first one or two words of args and
// returns it with the remaining arguments.
func lookup(args []string) (command, []string, error) {
	cmds := commands()
	if len(args) > 1 {
		for _, cmd := range cmds {
			if cmd.name == args[0]+" "+args[1] {
				return cmd, args[2:], nil
			}
		}
	}
	var subs []string
	for _, cmd := range cmds {
		if cmd.name == args[0] {
			return cmd, args[1:], nil
		}
		if group, sub, ok := strings.Cut(cmd.name, " "); ok && group == args[0] {
			subs = append(subs, sub)
		}
	}
	if len(subs) > 0 {
		if len(args) == 1 {
			return command{}, nil, usagef("%s: missing subcommand: want one of %s", args[0], strings.Join(subs, ", "))
		}
		return command{}, nil, usagef("%s: unknown subcommand %q: want one of %s", args[0], args[1], strings.Join(subs, ", "))
	}
	return command{}, nil, usagef("unknown command %q (run \"pgqrs help\" for the list)", args[0])
}

// parseInterleaved parses fs from args, allowing flags after positional
// arguments ("send q {} --delay 5s"), and returns the positional arguments.
// Everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// help prints the overall usage, or one command's with "help CMD".
func (c *cli) help(args []string) error {
	if len(args) == 0 {
		c.usage(c.stdout)
		return nil
	}
	cmd, rest, err := lookup(args)
	if err != nil {
		return err
	}
	if len(rest) > 0 {
		return usagef("help: unexpected argument %q", rest[0])
	}
	fs := flag.NewFlagSet(cmd.name, flag.ContinueOnError)
	cmd.setup(c, fs)
	c.commandUsage(c.stdout, cmd, fs)
	return nil
}

// usage prints the list of commands and the global flags to w.
func (c *cli) usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: pgqrs [--dsn DSN] [--schema NAME] [--json] [--timeout 30s] COMMAND [ARGS]")
	fmt.Fprintln(w, "\nCommands:")
	for _, cmd := range commands() {
		fmt.Fprintf(w, "  %-40s %s\n", strings.TrimSpace(cmd.name+" "+cmd.args), cmd.summary)
	}
	fmt.Fprintln(w, "\nGlobal flags:")
	fs := flag.NewFlagSet("pgqrs", flag.ContinueOnError)
	new(cli).globalFlags(fs)
	printFlags(w, fs)
	fmt.Fprintln(w, "\nRun \"pgqrs help COMMAND\" for a command's flags. Exit status: 0 ok, 1 failure, 2 usage error.")
}

// commandUsage prints one command's synopsis and flags to w.
func (c *cli) commandUsage(w io.Writer, cmd command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: pgqrs [global flags] %s\n\n%s.\n", strings.TrimSpace(cmd.name+" "+cmd.args), upperFirst(cmd.summary))
	if hasFlags(fs) {
		fmt.Fprintln(w, "\nFlags:")
		printFlags(w, fs)
	}
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// printFlags lists the flags of fs in the "--name VALUE  usage (default x)"
// form this command documents.
func printFlags(w io.Writer, fs *flag.FlagSet) {
	t := newTable(w)
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		name := "  --" + f.Name
		if typ != "" {
			name += " " + typ
		}
		if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "false" && f.DefValue != "0s" {
			usage += " (default " + f.DefValue + ")"
		}
		t.row(name, usage)
	})
	t.flush()
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// open returns the Store for --dsn and --schema, opening it on first use.
// main closes it.
func (c *cli) open(ctx context.Context) (*pgqrs.Store, error) {
	if c.store != nil {
		return c.store, nil
	}
	var opts []pgqrs.Option
	if c.schema != "" {
		opts = append(opts, pgqrs.WithSchema(c.schema))
	}
	s, err := pgqrs.Open(ctx, c.dsn, opts...)
	if err != nil {
		return nil, err
	}
	c.store = s
	return s, nil
}

// explain says why err happened when the user can do something about it:
// an interrupt, or tables that are not installed.
func (c *cli) explain(ctx context.Context, err error) error {
	switch {
	case isClosed(c.interrupted):
		return fmt.Errorf("interrupted: %w", err)
	case c.store == nil || exitCode(err) != 1:
		return err
	}
	// A failure on a database that answers: if the tables are missing,
	// say so rather than leaving the user with "no such table".
	vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var se *pgqrs.SchemaError
	if verr := c.store.Admin().Verify(vctx); errors.As(verr, &se) {
		for _, p := range se.Problems {
			if strings.HasPrefix(p, "missing table") {
				return fmt.Errorf("%w (the pgqrs tables are missing: run \"pgqrs install\" first)", err)
			}
		}
	}
	return err
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// exitCode maps err to the exit status: 2 for usage errors and for input the
// library rejects as malformed, 3 when the database refused the login, 1 for
// everything else.
func exitCode(err error) int {
	var ue *usageError
	var be *bench.UsageError
	switch {
	case errors.Is(err, pgqrs.ErrAuthFailed):
		return 3
	case errors.As(err, &ue), errors.As(err, &be),
		errors.Is(err, pgqrs.ErrInvalidDSN),
		errors.Is(err, pgqrs.ErrInvalidName),
		errors.Is(err, pgqrs.ErrInvalidArgument),
		errors.Is(err, pgqrs.ErrInvalidPayload),
		errors.Is(err, pgqrs.ErrInvalidSchedule),
		errors.Is(err, pgqrs.ErrPayloadTooLarge),
		errors.Is(err, pgqrs.ErrBatchTooLarge):
		return 2
	}
	return 1
}

// oneLine renders an error message as one line, without the "pgqrs: "
// prefixes of the library's sentinels (main adds one in front).
func oneLine(msg string) string {
	msg = strings.ReplaceAll(msg, "pgqrs: ", "")
	return strings.Join(strings.Fields(msg), " ")
}

// nonNegative rejects a negative duration flag as a usage error.
func nonNegative(flagName string, d time.Duration) error {
	if d < 0 {
		return usagef("%s must not be negative, got %v", flagName, d)
	}
	return nil
}

// positive rejects a zero or negative duration flag as a usage error.
func positive(flagName string, d time.Duration) error {
	if d <= 0 {
		return usagef("%s must be positive, got %v", flagName, d)
	}
	return nil
}

// atLeastOne rejects an integer flag below one as a usage error.
func atLeastOne(flagName string, n int) error {
	if n < 1 {
		return usagef("%s must be at least 1, got %d", flagName, n)
	}
	return nil
}
