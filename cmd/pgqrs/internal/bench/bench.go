// Package bench is "pgqrs bench": throughput, latency and scaling of pgqrs
// on one backend, measured end to end through pgqrs's public API, against a
// floor, the same drain in raw SQL over database/sql (floor.go), with result
// tables (report.go) and optional SVG charts (svg.go). It uses nothing of
// pgqrs but its exported API. docs/benchmarks.md explains the scenarios and
// shows the numbers of this project's machine type; docs/cli.md documents
// the flags.
package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// The bench's fixed settings.
const (
	queuePrefix   = "pgqrs-bench-"   // queues are named pgqrs-bench-<pid>-<random>-<scenario>
	fillChunk     = 1000             // messages per EnqueueBatch (and per floor insert) while prefilling
	progressEvery = 5 * time.Second  // how often a long run reports progress on stderr
	maxErrors     = 100              // a run gives up after this many failed statements in a row
	enqueueLimit  = 5 * time.Second  // longest an enqueue variant runs (also bounded by --duration and --backlog)
	settle        = 10 * time.Second // how long latency waits for the last messages after the producer stops
	runDeadline   = time.Hour        // a single drain that takes longer than this fails
	latencyConc   = 4                // handlers of the latency scenario's Run consumer
	latencyBatch  = 10               // its claim batch
)

// scenarios lists the scenarios in the order bench runs them.
var scenarios = []string{"drain", "floor", "drain-priority", "drain-run", "drain-steady", "drain-limited", "drain-grouped", "enqueue", "enqueue-unique", "latency", "workflow"}

// extraScenarios run only when named: they take long or write pgqrs's
// tables directly (admin-reads: see admin.go).
var extraScenarios = []string{"admin-reads"}

// Config holds the flags of "pgqrs bench".
type Config struct {
	backend     string
	dsn         string
	schema      string
	scenarios   string
	backlog     int
	messages    int
	handlerTime time.Duration
	history     int
	consumers   string
	batch       string
	concurrency string
	runs        int
	wfConc      string
	duration    time.Duration
	rate        float64
	poll        time.Duration
	svg         string
	cpuprofile  string
	from        string
}

// Flags declares bench's flags on fs and returns the configuration they
// fill when fs is parsed.
func Flags(fs *flag.FlagSet) *Config {
	b := &Config{}
	fs.StringVar(&b.backend, "backend", "", "sqlite, postgres or turso (default: the backend of --dsn, else sqlite in a temporary file)")
	fs.StringVar(&b.dsn, "dsn", "", "database `DSN` (default: the global --dsn when it names --backend)")
	fs.StringVar(&b.schema, "schema", "", "PostgreSQL schema `NAME` for the pgqrs and floor tables (default: the global --schema)")
	fs.StringVar(&b.scenarios, "scenario", "all", "comma-separated scenarios: "+strings.Join(scenarios, ", ")+", or all")
	fs.IntVar(&b.backlog, "backlog", 50000, "messages prefilled for each drain, floor and drain-run")
	fs.IntVar(&b.messages, "messages", 0, "messages drain-steady drains while producers keep --backlog waiting (default 10 × --backlog)")
	fs.DurationVar(&b.handlerTime, "handler-time", 0, "how long each handler of drain-limited sleeps (0: handlers that do nothing)")
	fs.IntVar(&b.history, "history", 10_000_000, "archived rows the admin-reads scenario builds (PostgreSQL)")
	fs.StringVar(&b.consumers, "consumers", "1,2,4", "comma-separated consumer counts for drain and floor")
	fs.StringVar(&b.batch, "batch", "1,10,50", "comma-separated claim batch sizes for drain, floor and drain-run")
	fs.StringVar(&b.concurrency, "concurrency", "1,4,16", "comma-separated Run concurrencies for drain-run")
	fs.IntVar(&b.runs, "runs", 2000, "runs triggered for each workflow drain")
	fs.StringVar(&b.wfConc, "workflow-concurrency", "1,8,32", "comma-separated Serve concurrencies for the workflow scenario")
	fs.DurationVar(&b.duration, "duration", 10*time.Second, "how long latency sends (per mode); also bounds each enqueue variant (at most 5s)")
	fs.Float64Var(&b.rate, "rate", 100, "messages per second the latency scenario sends")
	fs.DurationVar(&b.poll, "poll", 0, "RunOptions.PollInterval of the Run consumers (0: the library default, 1s)")
	fs.StringVar(&b.svg, "svg", "", "write SVG charts into `DIR`")
	fs.StringVar(&b.from, "from", "", "with --svg: draw the charts from `FILE`, the --json output of earlier runs (any backends), instead of running anything")
	fs.StringVar(&b.cpuprofile, "cpuprofile", "", "write a CPU profile of each drain and floor loop (not its prefill) into `DIR`, one file per row")
	return b
}

// Percentiles are latency percentiles in milliseconds.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Machine describes where a result was measured.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model,omitempty"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
	GoVersion string `json:"go_version"`
	Database  string `json:"database"` // the server's or library's version string
}

// Result is one row of bench's output: one JSON line with --json.
type Result struct {
	Scenario    string   `json:"scenario"` // drain, floor, drain-priority, drain-run, drain-limited, drain-grouped, enqueue, enqueue-unique, latency, workflow
	Backend     string   `json:"backend"`  // sqlite, postgres, turso-http, turso-ws, turso-libsql
	Mode        string   `json:"mode,omitempty"`
	Consumers   int      `json:"consumers,omitempty"`
	Concurrency int      `json:"concurrency,omitempty"`
	Batch       int      `json:"batch"`
	Backlog     int      `json:"backlog,omitempty"`
	FillSeconds float64  `json:"fill_seconds,omitempty"` // drain, floor, drain-run: how long the prefill took
	TargetRate  float64  `json:"target_rate,omitempty"`
	PollMs      float64  `json:"poll_ms,omitempty"`
	Messages    int64    `json:"messages"`
	Seconds     float64  `json:"seconds"`
	MsgsPerSec  float64  `json:"msgs_per_sec"`
	FloorRatio  *float64 `json:"floor_ratio,omitempty"` // drain ÷ floor at the same consumers × batch
	// TenthsPerSec: drain-limited, drain-grouped: the rate of each tenth
	// of the drain, first to last.
	TenthsPerSec []float64 `json:"tenths_msgs_per_sec,omitempty"`
	// drain-steady: the last tenth's rate ÷ the first's; the claim's plan
	// (Consumer.ExplainDequeue) at the start and at the end, and the pages
	// its claim-index scans read then and at each tenth (Postgres).
	LastOverFirst   *float64 `json:"last_over_first,omitempty"`
	ClaimPlanStart  string   `json:"claim_plan_start,omitempty"`
	ClaimPlanEnd    string   `json:"claim_plan_end,omitempty"`
	ClaimPagesStart int64    `json:"claim_pages_start,omitempty"`
	ClaimPagesEnd   int64    `json:"claim_pages_end,omitempty"`
	TenthPages      []int64  `json:"tenth_claim_pages,omitempty"`
	// The same pages for a claim from the start of the range (a consumer
	// that has not claimed yet: no floors).
	FullPagesStart int64        `json:"from_start_pages_start,omitempty"`
	FullPagesEnd   int64        `json:"from_start_pages_end,omitempty"`
	TenthFullPages []int64      `json:"tenth_from_start_pages,omitempty"`
	HandlerMs      float64      `json:"handler_ms,omitempty"`
	DequeueMs      *Percentiles `json:"dequeue_ms,omitempty"`
	ArchiveMs      *Percentiles `json:"archive_ms,omitempty"`
	LatencyMs      *Percentiles `json:"latency_ms,omitempty"` // latency: enqueue → handler start; enqueue: one call
	EmptyPolls     int64        `json:"empty_polls"`
	Errors         int64        `json:"errors"`
	Machine        Machine      `json:"machine"`
}

// bencher runs the scenarios of one invocation.
type bencher struct {
	s        *pgqrs.Store
	prefix   string // of this invocation's queue names, so concurrent benches never touch each other's
	floorID  int64  // queue_id of this invocation's floor rows: the ID of its "floor" queue
	dsn      string
	schema   string
	backend  string // result label: sqlite, postgres, turso-http, ...
	machine  Machine
	flags    Config
	progress io.Writer
	results  []*Result
	enc      *json.Encoder // --json: one line per result as it is made

	workflows []string // created by the workflow scenario, deleted at the end
}

// Env is what the command line hands bench besides its own flags.
type Env struct {
	Stdout, Stderr io.Writer
	// JSON: print one JSON line per result on Stdout instead of tables.
	JSON bool
	// DSN is the global --dsn (or $PGQRS_DSN) when the user gave one, else
	// "": bench then runs on --dsn, or on SQLite in a temporary file.
	DSN string
	// Schema is the global --schema, used when --schema is not given.
	Schema string
}

// UsageError is a mistake in bench's flags (the command exits with 2).
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Run runs the scenarios cfg selects and prints their results.
func Run(ctx context.Context, cfg *Config, env Env) error {
	f := *cfg
	if f.from != "" {
		return chartsFrom(env.Stderr, f.from, f.svg)
	}
	scen, err := parseScenarios(f.scenarios)
	if err != nil {
		return err
	}
	consumers, err := parseInts("--consumers", f.consumers)
	if err != nil {
		return err
	}
	batches, err := parseInts("--batch", f.batch)
	if err != nil {
		return err
	}
	concs, err := parseInts("--concurrency", f.concurrency)
	if err != nil {
		return err
	}
	wfConcs, err := parseInts("--workflow-concurrency", f.wfConc)
	if err != nil {
		return err
	}
	switch {
	case f.runs < 1:
		return usagef("--runs must be at least 1, got %d", f.runs)
	case f.backlog < 1:
		return usagef("--backlog must be at least 1, got %d", f.backlog)
	case f.messages < 0:
		return usagef("--messages must not be negative, got %d", f.messages)
	case f.handlerTime < 0:
		return usagef("--handler-time must not be negative, got %v", f.handlerTime)
	case f.history < 1:
		return usagef("--history must be at least 1, got %d", f.history)
	case f.duration <= 0:
		return usagef("--duration must be positive, got %v", f.duration)
	case f.poll < 0:
		return usagef("--poll must not be negative, got %v", f.poll)
	case !(f.rate > 0) || math.IsInf(f.rate, 0):
		return usagef("--rate must be a positive number, got %v", f.rate)
	}
	dsn, cleanup, err := resolveDSN(f, env.DSN)
	if err != nil {
		return err
	}
	defer cleanup()
	schema := cmp.Or(f.schema, env.Schema)
	var opts []pgqrs.Option
	if schema != "" {
		opts = append(opts, pgqrs.WithSchema(schema))
	}
	s, err := pgqrs.Open(ctx, dsn, opts...)
	if err != nil {
		return err
	}
	// The results are printed by then; a failure to close the pool changes
	// nothing measured.
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		return err
	}
	b := &bencher{s: s, dsn: dsn, schema: schema, flags: f, progress: env.Stderr, backend: backendLabel(s.Dialect(), dsn),
		prefix: fmt.Sprintf("%s%d-%04x-", queuePrefix, os.Getpid(), rand.N(1<<16))}
	b.machine = machineInfo(ctx, s)
	if env.JSON {
		b.enc = json.NewEncoder(env.Stdout)
	}
	b.logf("%s (%s), %d CPUs, %s", b.backend, b.machine.Database, b.machine.CPUs, b.machine.GoVersion)
	runErr := b.run(ctx, scen, consumers, batches, concs)
	if runErr == nil && scen["workflow"] {
		runErr = b.runWorkflows(ctx, wfConcs)
	}
	b.cleanup(context.WithoutCancel(ctx))
	if !env.JSON && len(b.results) > 0 {
		if err := printTables(env.Stdout, b.results); err != nil {
			return err
		}
	}
	if f.svg != "" && len(b.results) > 0 {
		files, err := writeSVGs(f.svg, b.backend, b.results)
		if err != nil {
			return errors.Join(runErr, err)
		}
		for _, name := range files {
			b.logf("wrote %s", name)
		}
	}
	return runErr
}

// chartsFrom draws the charts of every backend found in file, JSON lines
// written by earlier runs with --json (several runs may be concatenated, for
// example the best row of repeated runs), into dir.
func chartsFrom(progress io.Writer, file, dir string) error {
	if dir == "" {
		return usagef("--from needs --svg DIR")
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	byBackend := map[string][]*Result{}
	var backends []string
	dec := json.NewDecoder(strings.NewReader(string(data)))
	for {
		r := &Result{}
		err := dec.Decode(r)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		if r.Backend == "" || r.Scenario == "" {
			return fmt.Errorf("%s: a line without scenario and backend is not bench output", file)
		}
		if byBackend[r.Backend] == nil {
			backends = append(backends, r.Backend)
		}
		byBackend[r.Backend] = append(byBackend[r.Backend], r)
	}
	if len(backends) == 0 {
		return fmt.Errorf("%s: no results", file)
	}
	for _, backend := range backends {
		files, err := writeSVGs(dir, backend, byBackend[backend])
		if err != nil {
			return err
		}
		for _, name := range files {
			fmt.Fprintf(progress, "bench: wrote %s\n", name)
		}
	}
	return nil
}

// run runs the scenarios in order; drain and floor alternate per consumers ×
// batch so both see the same machine conditions.
func (b *bencher) run(ctx context.Context, scen map[string]bool, consumers, batches, concs []int) error {
	if scen["floor"] {
		if err := b.floorSetup(ctx); err != nil {
			return fmt.Errorf("floor tables: %w", err)
		}
	}
	if scen["drain"] || scen["floor"] {
		for _, batch := range batches {
			for _, cons := range consumers {
				var drain, floor *Result
				var err error
				if scen["drain"] {
					if drain, err = b.drain(ctx, cons, batch, 1); err != nil {
						return fmt.Errorf("drain %d×%d: %w", cons, batch, err)
					}
				}
				if scen["floor"] {
					if floor, err = b.floor(ctx, cons, batch); err != nil {
						return fmt.Errorf("floor %d×%d: %w", cons, batch, err)
					}
				}
				if drain != nil && floor != nil && floor.MsgsPerSec > 0 {
					r := drain.MsgsPerSec / floor.MsgsPerSec
					drain.FloorRatio = &r
				}
				for _, r := range []*Result{drain, floor} {
					if r != nil {
						if err := b.emit(r); err != nil {
							return err
						}
					}
				}
			}
		}
	}
	if scen["drain-priority"] {
		for _, batch := range batches {
			for _, cons := range consumers {
				r, err := b.drain(ctx, cons, batch, pgqrs.MaxPriority+1)
				if err != nil {
					return fmt.Errorf("drain-priority %d×%d: %w", cons, batch, err)
				}
				if err := b.emit(r); err != nil {
					return err
				}
			}
		}
	}
	if scen["drain-run"] {
		for _, batch := range batches {
			for _, conc := range concs {
				r, err := b.drainRun(ctx, conc, batch)
				if err != nil {
					return fmt.Errorf("drain-run %d×%d: %w", conc, batch, err)
				}
				if err := b.emit(r); err != nil {
					return err
				}
			}
		}
	}
	if scen["drain-steady"] {
		r, err := b.drainSteady(ctx, consumers, batches)
		if err != nil {
			return fmt.Errorf("drain-steady: %w", err)
		}
		if err := b.emit(r); err != nil {
			return err
		}
	}
	if scen["drain-limited"] {
		rs, err := b.drainLimited(ctx)
		if err != nil {
			return fmt.Errorf("drain-limited: %w", err)
		}
		for _, r := range rs {
			if err := b.emit(r); err != nil {
				return err
			}
		}
	}
	if scen["drain-grouped"] {
		r, err := b.drainGrouped(ctx)
		if err != nil {
			return fmt.Errorf("drain-grouped: %w", err)
		}
		if err := b.emit(r); err != nil {
			return err
		}
	}
	if scen["enqueue"] {
		for _, batch := range []int{1, 10, 100, 1000} {
			r, err := b.enqueue(ctx, batch)
			if err != nil {
				return fmt.Errorf("enqueue batch %d: %w", batch, err)
			}
			if err := b.emit(r); err != nil {
				return err
			}
		}
	}
	if scen["enqueue-unique"] {
		for _, mode := range []string{"unique-single", "unique-batch", "jobs-batch"} {
			r, err := b.enqueueUnique(ctx, mode)
			if err != nil {
				return fmt.Errorf("enqueue-unique %s: %w", mode, err)
			}
			if err := b.emit(r); err != nil {
				return err
			}
		}
	}
	if scen["admin-reads"] {
		rs, err := b.adminReads(ctx)
		if err != nil {
			return fmt.Errorf("admin-reads: %w", err)
		}
		for _, r := range rs {
			if err := b.emit(r); err != nil {
				return err
			}
		}
	}
	if scen["latency"] {
		for _, mode := range []string{"wakeup", "poll"} {
			r, err := b.latency(ctx, mode)
			if err != nil {
				return fmt.Errorf("latency (%s): %w", mode, err)
			}
			if err := b.emit(r); err != nil {
				return err
			}
		}
	}
	return nil
}

// emit records r and, with --json, prints it as one line.
func (b *bencher) emit(r *Result) error {
	b.results = append(b.results, r)
	if b.enc != nil {
		if err := b.enc.Encode(r); err != nil {
			return fmt.Errorf("write JSON: %w", err)
		}
	}
	return nil
}

func (b *bencher) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "bench: "+format+"\n", args...)
}

func (b *bencher) result(scenario string) *Result {
	return &Result{Scenario: scenario, Backend: b.backend, Machine: b.machine}
}

// queue returns this invocation's queue for suffix, created if missing and
// emptied.
func (b *bencher) queue(ctx context.Context, suffix string) (string, error) {
	name := b.prefix + suffix
	if _, err := b.s.Admin().CreateQueue(ctx, name); err != nil && !errors.Is(err, pgqrs.ErrQueueExists) {
		return "", err
	}
	if _, err := b.s.Admin().PurgeQueue(ctx, name); err != nil {
		return "", err
	}
	if err := b.vacuum(ctx, "pgqrs_messages"); err != nil {
		return "", err
	}
	return name, nil
}

// vacuum vacuums a Postgres table: a purge leaves the previous run's rows
// dead in the claim index until a vacuum, and every run should start from
// the same state. Elsewhere it does nothing.
func (b *bencher) vacuum(ctx context.Context, table string) error {
	if b.s.Dialect() != pgqrs.Postgres {
		return nil
	}
	if _, err := b.s.DB().ExecContext(ctx, "VACUUM "+b.pgTable(table)); err != nil {
		return fmt.Errorf("vacuum %s: %w", table, err)
	}
	return nil
}

// cleanup purges and deletes this invocation's queues and floor rows, best
// effort: the workers it registered are stopped by then.
func (b *bencher) cleanup(ctx context.Context) {
	b.floorCleanup(ctx)
	b.deleteWorkflows(ctx)
	a := b.s.Admin()
	qs, err := a.ListQueues(ctx)
	if err != nil {
		return
	}
	for _, q := range qs {
		if strings.HasPrefix(q.Name, b.prefix) {
			_, _ = a.PurgeQueue(ctx, q.Name)
			_ = a.DeleteQueue(ctx, q.Name)
		}
	}
}

// pgTable returns name qualified with the bench's Postgres schema, if any.
func (b *bencher) pgTable(name string) string {
	if b.schema == "" {
		return name
	}
	return `"` + b.schema + `".` + name
}

// jobPayload is a small JSON job, as an application would enqueue.
func jobPayload(i int) json.RawMessage {
	return json.RawMessage(`{"id":` + strconv.Itoa(i) + `,"kind":"email","to":"user` + strconv.Itoa(i%1000) + `@example.com"}`)
}

// fill enqueues n messages on queue with EnqueueBatch, or, when levels is
// above 1, with EnqueueJobs, message i at priority i % levels.
func (b *bencher) fill(ctx context.Context, queue string, n, levels int) error {
	p, err := b.s.Producer(ctx, queue)
	if err != nil {
		return err
	}
	defer p.Shutdown(context.WithoutCancel(ctx))
	if levels > 1 {
		jobs := make([]pgqrs.Job, 0, fillChunk)
		for i := 0; i < n; {
			jobs = jobs[:0]
			for ; len(jobs) < fillChunk && i < n; i++ {
				jobs = append(jobs, pgqrs.Job{Payload: jobPayload(i), Options: []pgqrs.EnqueueOption{pgqrs.Priority(i % levels)}})
			}
			if _, err := p.EnqueueJobs(ctx, jobs); err != nil {
				return fmt.Errorf("prefill: %w", err)
			}
		}
		return nil
	}
	chunk := make([]any, 0, fillChunk)
	for i := 0; i < n; {
		chunk = chunk[:0]
		for ; len(chunk) < fillChunk && i < n; i++ {
			chunk = append(chunk, jobPayload(i))
		}
		if _, err := p.EnqueueBatch(ctx, chunk); err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
	}
	return nil
}

// drainLoop is the body shared by drain and floor: consumers goroutines each
// loop claim → archive until n messages are archived.
type drainLoop struct {
	n, consumers int
	// open: more than n messages may be waiting (drain-steady), so the loop
	// may archive a few more than n: its last claims in flight.
	open bool
	// claim returns the IDs of up to batch messages claimed by consumer i.
	claim func(ctx context.Context, i int) ([]int64, error)
	// archive archives ids for consumer i and returns how many it archived.
	archive func(ctx context.Context, i int, ids []int64) (int, error)
}

// drainStats is what a drainLoop measured.
type drainStats struct {
	elapsed          time.Duration
	done             int64
	dequeue, archive []time.Duration
	empty, errs      int64
}

func (b *bencher) runDrain(ctx context.Context, label string, l drainLoop) (drainStats, error) {
	ctx, cancel := context.WithTimeout(ctx, runDeadline)
	defer cancel()
	var (
		done, empty, errs atomic.Int64
		wg                sync.WaitGroup
		mu                sync.Mutex
		st                drainStats
		failed            error
	)
	fail := func(err error) {
		mu.Lock()
		if failed == nil {
			failed = err
		}
		mu.Unlock()
		cancel()
	}
	stopProfile, err := b.startProfile(label)
	if err != nil {
		return drainStats{}, err
	}
	stopProgress := b.progressTicker(label, &done, int64(l.n))
	start := time.Now()
	for i := range l.consumers {
		wg.Go(func() {
			var deq, arc []time.Duration
			defer func() {
				mu.Lock()
				st.dequeue = append(st.dequeue, deq...)
				st.archive = append(st.archive, arc...)
				mu.Unlock()
			}()
			inARow := 0
			failure := func(err error) bool {
				errs.Add(1)
				inARow++
				if inARow >= maxErrors || ctx.Err() != nil {
					fail(fmt.Errorf("consumer %d: %d errors in a row, the last: %w", i, inARow, err))
					return true
				}
				time.Sleep(10 * time.Millisecond)
				return false
			}
			for done.Load() < int64(l.n) && ctx.Err() == nil {
				t0 := time.Now()
				ids, err := l.claim(ctx, i)
				deq = append(deq, time.Since(t0))
				if err != nil {
					if failure(err) {
						return
					}
					continue
				}
				if len(ids) == 0 {
					empty.Add(1)
					time.Sleep(time.Millisecond) // others hold the rest
					continue
				}
				t1 := time.Now()
				n, err := l.archive(ctx, i, ids)
				arc = append(arc, time.Since(t1))
				if err != nil {
					if failure(err) {
						return
					}
					continue // the lease expires and the messages come back
				}
				inARow = 0
				if n != len(ids) {
					errs.Add(int64(len(ids) - n))
				}
				done.Add(int64(n))
			}
		})
	}
	wg.Wait()
	st.elapsed = time.Since(start)
	stopProgress()
	if err := stopProfile(); err != nil {
		return st, err
	}
	st.done, st.empty, st.errs = done.Load(), empty.Load(), errs.Load()
	if failed != nil {
		return st, failed
	}
	if st.done < int64(l.n) || !l.open && st.done != int64(l.n) {
		return st, fmt.Errorf("archived %d of %d messages", st.done, l.n)
	}
	return st, nil
}

// startProfile starts a CPU profile of one drain loop when --cpuprofile is
// set, into DIR/<label>.pprof ("drain 1×50" → drain-1x50.pprof); the returned
// func stops it.
func (b *bencher) startProfile(label string) (stop func() error, err error) {
	if b.flags.cpuprofile == "" {
		return func() error { return nil }, nil
	}
	if err := os.MkdirAll(b.flags.cpuprofile, 0o755); err != nil {
		return nil, err
	}
	name := strings.NewReplacer(" ", "-", "×", "x").Replace(label) + ".pprof"
	f, err := os.Create(filepath.Join(b.flags.cpuprofile, name))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() error {
		pprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// progressTicker reports done/total on stderr every progressEvery until the
// returned func is called.
func (b *bencher) progressTicker(label string, done *atomic.Int64, total int64) func() {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				b.logf("  %s: %d/%d", label, done.Load(), total)
			}
		}
	})
	return func() { close(stop); wg.Wait() }
}

func (st drainStats) fill(r *Result) {
	r.Messages = st.done
	r.Seconds = st.elapsed.Seconds()
	r.MsgsPerSec = float64(st.done) / st.elapsed.Seconds()
	r.DequeueMs = percentilesOf(st.dequeue)
	r.ArchiveMs = percentilesOf(st.archive)
	r.EmptyPolls = st.empty
	r.Errors = st.errs
}

// prefilled makes the scenario's queue (see queue) and fills it with n
// messages spread over levels priorities (see fill), and returns it with
// how long the fill took.
func (b *bencher) prefilled(ctx context.Context, label, scenario string, n, levels int) (queue string, took time.Duration, err error) {
	if queue, err = b.queue(ctx, scenario); err != nil {
		return "", 0, err
	}
	b.logf("%s: prefilling %d messages", label, n)
	start := time.Now()
	if err := b.fill(ctx, queue, n, levels); err != nil {
		return "", 0, err
	}
	took = time.Since(start)
	b.logf("%s: prefilled in %.2fs (%.0f msgs/s)", label, took.Seconds(), float64(n)/took.Seconds())
	return queue, took, nil
}

// drain prefills the queue and drains it with consumers Consumers, each
// looping Dequeue(batch) → ArchiveBatch. With levels above 1 the backlog
// is spread evenly over that many priorities, interleaved (scenario
// drain-priority): the claims take level 0 first, then 1, and so on.
func (b *bencher) drain(ctx context.Context, consumers, batch, levels int) (*Result, error) {
	n := b.flags.backlog
	scenario := "drain"
	if levels > 1 {
		scenario = "drain-priority"
	}
	label := fmt.Sprintf("%s %d×%d", scenario, consumers, batch)
	queue, fillTime, err := b.prefilled(ctx, label, scenario, n, levels)
	if err != nil {
		return nil, err
	}
	cs := make([]*pgqrs.Consumer, consumers)
	for i := range cs {
		if cs[i], err = b.s.Consumer(ctx, queue); err != nil {
			return nil, err
		}
		defer cs[i].Shutdown(context.WithoutCancel(ctx))
	}
	st, err := b.runDrain(ctx, label, drainLoop{
		n: n, consumers: consumers,
		claim: func(ctx context.Context, i int) ([]int64, error) {
			return dequeueIDs(ctx, cs[i], batch)
		},
		archive: func(ctx context.Context, i int, ids []int64) (int, error) {
			return archiveCount(ctx, cs[i], ids)
		},
	})
	if err != nil {
		return nil, err
	}
	r := b.result(scenario)
	if levels > 1 {
		r.Mode = fmt.Sprintf("%d priorities", levels)
	}
	r.Consumers, r.Batch, r.Backlog = consumers, batch, n
	r.FillSeconds = fillTime.Seconds()
	st.fill(r)
	b.logf("%s: %d messages in %.2fs: %.0f msgs/s", label, st.done, st.elapsed.Seconds(), r.MsgsPerSec)
	return r, nil
}

// dequeueIDs claims up to batch messages for c and returns their IDs.
func dequeueIDs(ctx context.Context, c *pgqrs.Consumer, batch int) ([]int64, error) {
	msgs, err := c.Dequeue(ctx, batch)
	ids := make([]int64, len(msgs))
	for j, m := range msgs {
		ids[j] = m.ID
	}
	return ids, err
}

// archiveCount archives ids for c and returns how many it archived.
func archiveCount(ctx context.Context, c *pgqrs.Consumer, ids []int64) (int, error) {
	ok, err := c.ArchiveBatch(ctx, ids)
	n := 0
	for _, a := range ok {
		if a {
			n++
		}
	}
	return n, err
}

// drainRun prefills the queue and drains it through Consumer.Run with a
// no-op handler.
func (b *bencher) drainRun(ctx context.Context, conc, batch int) (*Result, error) {
	n := b.flags.backlog
	label := fmt.Sprintf("drain-run %d×%d", conc, batch)
	queue, fillTime, err := b.prefilled(ctx, label, "run", n, 1)
	if err != nil {
		return nil, err
	}
	c, err := b.s.Consumer(ctx, queue)
	if err != nil {
		return nil, err
	}
	var handled atomic.Int64
	finished := make(chan struct{})
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopProgress := b.progressTicker(label, &handled, int64(n))
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		done <- c.Run(rctx, func(context.Context, *pgqrs.Message) error {
			if handled.Add(1) == int64(n) {
				close(finished)
			}
			return nil
		}, &pgqrs.RunOptions{Concurrency: conc, BatchSize: batch, PollInterval: b.flags.poll})
	}()
	var runErr error
	select {
	case <-finished:
		cancel()
		runErr = <-done // Run returns after archiving the last successes
	case runErr = <-done:
		if runErr == nil {
			runErr = ctx.Err()
		}
	case <-time.After(runDeadline):
		cancel()
		<-done
		runErr = fmt.Errorf("not drained within %v", runDeadline)
	}
	elapsed := time.Since(start)
	stopProgress()
	if runErr != nil {
		return nil, runErr
	}
	archived, err := b.s.Admin().CountArchived(ctx, queue)
	if err != nil {
		return nil, err
	}
	r := b.result("drain-run")
	r.Concurrency, r.Batch, r.Backlog = conc, batch, n
	r.FillSeconds = fillTime.Seconds()
	r.PollMs = float64(b.flags.poll) / float64(time.Millisecond)
	r.Messages, r.Seconds = archived, elapsed.Seconds()
	r.MsgsPerSec = float64(archived) / elapsed.Seconds()
	if archived != int64(n) {
		r.Errors = int64(n) - archived
	}
	b.logf("%s: %d messages in %.2fs: %.0f msgs/s", label, archived, elapsed.Seconds(), r.MsgsPerSec)
	return r, nil
}

// enqueue measures one producer enqueueing batches of the given size (1:
// Enqueue, else EnqueueBatch) until --backlog messages are in or the time
// limit passes.
func (b *bencher) enqueue(ctx context.Context, batch int) (*Result, error) {
	payloads := make([]any, batch)
	for i := range payloads {
		payloads[i] = jobPayload(i)
	}
	mode := "single"
	if batch > 1 {
		mode = "batch"
	}
	return b.enqueueLoop(ctx, "enqueue", mode, batch, fmt.Sprintf("enqueue batch %d", batch),
		func(ctx context.Context, p *pgqrs.Producer, _ int) (err error) {
			if batch == 1 {
				_, err = p.Enqueue(ctx, payloads[0])
			} else {
				_, err = p.EnqueueBatch(ctx, payloads)
			}
			return err
		})
}

// enqueueUnique measures one producer enqueueing messages with keys, each
// key new, until --backlog messages are in or the time limit passes: mode
// "unique-single" is Enqueue with Key, "unique-batch" EnqueueJobs of 100
// jobs with a Key each, and "jobs-batch" EnqueueJobs of 100 jobs without
// keys (the per-item batch's own cost, to hold against enqueue batch 100).
func (b *bencher) enqueueUnique(ctx context.Context, mode string) (*Result, error) {
	batch := 100
	if mode == "unique-single" {
		batch = 1
	}
	jobs := make([]pgqrs.Job, batch)
	dups := 0
	r, err := b.enqueueLoop(ctx, "enqueue-unique", mode, batch, fmt.Sprintf("enqueue-unique %s (batch %d)", mode, batch),
		func(ctx context.Context, p *pgqrs.Producer, sent int) error {
			for i := range jobs {
				jobs[i] = pgqrs.Job{Payload: jobPayload(sent + i)}
				if mode != "jobs-batch" {
					jobs[i].Options = []pgqrs.EnqueueOption{pgqrs.Key("k-" + strconv.Itoa(sent+i))}
				}
			}
			if batch == 1 {
				_, err := p.Enqueue(ctx, jobs[0].Payload, jobs[0].Options...)
				return err
			}
			res, err := p.EnqueueJobs(ctx, jobs)
			for _, r := range res {
				if r.Duplicate {
					dups++
				}
			}
			return err
		})
	if err == nil && dups > 0 {
		return nil, fmt.Errorf("%d new keys reported as duplicates", dups)
	}
	return r, err
}

// enqueueLoop times send (one call enqueueing batch messages, the first of
// them the sent-th) through one producer on a fresh queue until --backlog
// messages are in or the time limit passes, and returns the scenario's row
// (label names it in the log). The queue is purged afterwards.
func (b *bencher) enqueueLoop(ctx context.Context, scenario, mode string, batch int, label string,
	send func(ctx context.Context, p *pgqrs.Producer, sent int) error) (*Result, error) {
	queue, err := b.queue(ctx, scenario)
	if err != nil {
		return nil, err
	}
	p, err := b.s.Producer(ctx, queue)
	if err != nil {
		return nil, err
	}
	defer p.Shutdown(context.WithoutCancel(ctx))
	limit := min(b.flags.duration, enqueueLimit)
	var (
		calls []time.Duration
		sent  int
		errs  int64
	)
	start := time.Now()
	for sent < b.flags.backlog && (sent == 0 || time.Since(start) < limit) {
		t0 := time.Now()
		err := send(ctx, p, sent)
		calls = append(calls, time.Since(t0))
		if err != nil {
			if errs++; errs >= maxErrors || ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		sent += batch
	}
	elapsed := time.Since(start)
	r := b.result(scenario)
	r.Mode, r.Batch = mode, batch
	r.Messages, r.Seconds = int64(sent), elapsed.Seconds()
	r.MsgsPerSec = float64(sent) / elapsed.Seconds()
	r.LatencyMs = percentilesOf(calls)
	r.Errors = errs
	b.logf("%s: %d messages in %.2fs: %.0f msgs/s", label, sent, elapsed.Seconds(), r.MsgsPerSec)
	if _, err := b.s.Admin().PurgeQueue(ctx, queue); err != nil {
		return nil, err
	}
	return r, nil
}

// latency sends --rate messages a second for --duration through one
// producer to a Run consumer and measures enqueue → handler start.
//
// Mode "wakeup": the enqueue wakes the idle loop. On Postgres the producer
// uses a second Store, so the wakeup is LISTEN/NOTIFY; elsewhere producer
// and consumer share the Store and the wakeup is in-process. Mode "poll":
// the consumer's Store is made with pgqrs.New without a LISTEN DSN and the
// producer's is another Store, so only the poll finds messages.
func (b *bencher) latency(ctx context.Context, mode string) (*Result, error) {
	queue, err := b.queue(ctx, "latency")
	if err != nil {
		return nil, err
	}
	var opts []pgqrs.Option
	if b.schema != "" {
		opts = append(opts, pgqrs.WithSchema(b.schema))
	}
	cstore, pstore := b.s, b.s
	switch {
	case mode == "poll":
		if cstore, err = pgqrs.New(b.s.DB(), b.s.Dialect(), opts...); err != nil {
			return nil, err
		}
		defer cstore.Close()
	case b.s.Dialect() == pgqrs.Postgres:
		if pstore, err = pgqrs.Open(ctx, b.dsn, opts...); err != nil {
			return nil, err
		}
		defer pstore.Close()
	}
	p, err := pstore.Producer(ctx, queue)
	if err != nil {
		return nil, err
	}
	defer p.Shutdown(context.WithoutCancel(ctx))
	c, err := cstore.Consumer(ctx, queue)
	if err != nil {
		return nil, err
	}
	var (
		mu      sync.Mutex
		lat     []time.Duration
		handled atomic.Int64
	)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- c.Run(rctx, func(_ context.Context, m *pgqrs.Message) error {
			now := time.Now()
			var sent struct {
				T int64 `json:"t"`
			}
			if err := json.Unmarshal(m.Payload, &sent); err != nil {
				return err
			}
			mu.Lock()
			lat = append(lat, now.Sub(time.Unix(0, sent.T)))
			mu.Unlock()
			handled.Add(1)
			return nil
		}, &pgqrs.RunOptions{Concurrency: latencyConc, BatchSize: latencyBatch, PollInterval: b.flags.poll})
	}()
	time.Sleep(300 * time.Millisecond) // let the loop start, LISTEN and go idle
	label := "latency " + mode
	b.logf("%s: %.0f msgs/s for %v", label, b.flags.rate, b.flags.duration)
	interval := time.Duration(float64(time.Second) / b.flags.rate)
	var sent, errs int64
	start := time.Now()
	for i := 0; ; i++ {
		next := start.Add(time.Duration(i) * interval)
		if next.Sub(start) >= b.flags.duration {
			break
		}
		if d := time.Until(next); d > 0 {
			time.Sleep(d)
		}
		payload := json.RawMessage(`{"t":` + strconv.FormatInt(time.Now().UnixNano(), 10) + `}`)
		if _, err := p.Enqueue(ctx, payload); err != nil {
			if errs++; errs >= maxErrors || ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		sent++
	}
	sendTime := time.Since(start)
	wait := time.Now().Add(settle + b.flags.poll + time.Second)
	for handled.Load() < sent && time.Now().Before(wait) {
		select {
		case err := <-done:
			return nil, fmt.Errorf("consumer stopped: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	r := b.result("latency")
	r.Mode = mode
	r.Concurrency, r.Batch = latencyConc, latencyBatch
	r.TargetRate = b.flags.rate
	r.PollMs = float64(b.flags.poll) / float64(time.Millisecond)
	r.Messages, r.Seconds = int64(len(lat)), sendTime.Seconds()
	r.MsgsPerSec = float64(len(lat)) / sendTime.Seconds()
	r.LatencyMs = percentilesOf(lat)
	r.Errors = errs + sent - int64(len(lat))
	b.logf("%s: %d messages, %.0f msgs/s, p50 %.2f ms, p99 %.2f ms", label, len(lat), r.MsgsPerSec, r.LatencyMs.P50, r.LatencyMs.P99)
	return r, nil
}
