package bench

// The plumbing of the bench: resolving the database, parsing the sweep
// flags, machine information, percentiles and the result tables.

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// percentilesOf returns the p50/p95/p99 of ds in milliseconds (nearest
// rank), or nil for none.
func percentilesOf(ds []time.Duration) *Percentiles {
	if len(ds) == 0 {
		return nil
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		return float64(s[max(0, min(i, len(s)-1))]) / float64(time.Millisecond)
	}
	return &Percentiles{P50: at(0.50), P95: at(0.95), P99: at(0.99)}
}

// resolveDSN resolves the database: bench's --dsn, else the global DSN
// (global, "" when the user gave none) when it names --backend, else (SQLite
// only) a temporary file removed by cleanup.
func resolveDSN(f Config, global string) (dsn string, cleanup func(), err error) {
	cleanup = func() {}
	switch f.backend {
	case "", "sqlite", "postgres", "turso":
	default:
		return "", cleanup, usagef("--backend must be sqlite, postgres or turso, got %q", f.backend)
	}
	for _, cand := range []string{f.dsn, global} {
		if cand == "" {
			continue
		}
		if f.backend == "" || backendOf(cand) == f.backend {
			return cand, cleanup, nil
		}
		if cand == f.dsn {
			return "", cleanup, usagef("--dsn is not a %s DSN", f.backend)
		}
	}
	if f.backend != "" && f.backend != "sqlite" {
		return "", cleanup, usagef("--backend %s needs --dsn", f.backend)
	}
	dir, err := os.MkdirTemp("", "pgqrs-bench")
	if err != nil {
		return "", cleanup, err
	}
	return "sqlite:" + filepath.Join(dir, "bench.db"), func() { os.RemoveAll(dir) }, nil
}

// backendOf names the backend a DSN's scheme selects.
func backendOf(dsn string) string {
	scheme, _, _ := strings.Cut(dsn, ":")
	switch strings.ToLower(scheme) {
	case "postgres", "postgresql":
		return "postgres"
	case "sqlite", "sqlite3", "file":
		return "sqlite"
	case "libsql", "http", "https", "ws", "wss":
		return "turso"
	}
	if k, _, ok := strings.Cut(dsn, "="); ok && !strings.ContainsAny(k, ":/") {
		return "postgres" // libpq key=value: host=... dbname=...
	}
	return ""
}

// backendLabel is the backend name results carry: Turso's includes its
// transport, which changes the numbers severalfold.
func backendLabel(d pgqrs.Dialect, dsn string) string {
	if d != pgqrs.Turso {
		return string(d)
	}
	scheme, _, _ := strings.Cut(dsn, ":")
	switch strings.ToLower(scheme) {
	case "http", "https":
		return "turso-http"
	case "ws", "wss":
		return "turso-ws"
	}
	return "turso-" + strings.ToLower(scheme)
}

func machineInfo(ctx context.Context, s *pgqrs.Store) Machine {
	m := Machine{CPUs: runtime.NumCPU(), OS: runtime.GOOS, Arch: runtime.GOARCH, GoVersion: runtime.Version()}
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	q := "SELECT 'SQLite ' || sqlite_version()"
	if s.Dialect() == pgqrs.Postgres {
		q = "SELECT 'PostgreSQL ' || current_setting('server_version')"
	}
	if err := s.DB().QueryRowContext(ctx, q).Scan(&m.Database); err != nil {
		m.Database = "unknown"
	}
	if s.Dialect() == pgqrs.Turso {
		m.Database = "libSQL server, " + m.Database
	}
	return m
}

func parseScenarios(s string) (map[string]bool, error) {
	out := map[string]bool{}
	for name := range strings.SplitSeq(s, ",") {
		name = strings.TrimSpace(name)
		switch {
		case name == "all":
			for _, n := range scenarios {
				out[n] = true
			}
		case slices.Contains(scenarios, name), slices.Contains(extraScenarios, name):
			out[name] = true
		default:
			return nil, usagef("--scenario: unknown scenario %q (want %s or all)", name, strings.Join(scenarios, ", "))
		}
	}
	return out, nil
}

func parseInts(flagName, s string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(part))
		if err != nil || n < 1 {
			return nil, usagef("%s wants comma-separated numbers of at least 1, got %q", flagName, s)
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// printTables prints the results, one table per kind of scenario.
func printTables(w io.Writer, rs []*Result) error {
	pick := func(scen ...string) []*Result {
		var out []*Result
		for _, r := range rs {
			if slices.Contains(scen, r.Scenario) {
				out = append(out, r)
			}
		}
		return out
	}
	pct := func(p *Percentiles) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprintf("%s/%s/%s", ms(p.P50), ms(p.P95), ms(p.P99))
	}
	first := true
	section := func() {
		if !first {
			fmt.Fprintln(w)
		}
		first = false
	}
	if d := pick("drain", "floor", "drain-priority"); len(d) > 0 {
		section()
		t := newTable(w, "SCENARIO", "BACKEND", "CONSUMERS", "BATCH", "MESSAGES", "TIME", "MSGS/S", "÷FLOOR", "DEQUEUE MS p50/p95/p99", "ARCHIVE MS p50/p95/p99", "EMPTY POLLS", "ERRORS")
		for _, r := range d {
			ratio := "-"
			if r.FloorRatio != nil {
				ratio = fmt.Sprintf("%.2f", *r.FloorRatio)
			}
			t.row(r.Scenario, r.Backend, num(r.Consumers), num(r.Batch), num(r.Messages), secs(r.Seconds), rate(r.MsgsPerSec), ratio,
				pct(r.DequeueMs), pct(r.ArchiveMs), num(r.EmptyPolls), num(r.Errors))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if d := pick("drain-run"); len(d) > 0 {
		section()
		t := newTable(w, "SCENARIO", "BACKEND", "CONCURRENCY", "BATCH", "MESSAGES", "TIME", "MSGS/S", "ERRORS")
		for _, r := range d {
			t.row(r.Scenario, r.Backend, num(r.Concurrency), num(r.Batch), num(r.Messages), secs(r.Seconds), rate(r.MsgsPerSec), num(r.Errors))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if d := pick("drain-steady", "drain-limited", "drain-grouped"); len(d) > 0 {
		section()
		t := newTable(w, "SCENARIO", "BACKEND", "MODE", "CONSUMERS", "CONCURRENCY", "BATCH", "HANDLER MS", "MESSAGES", "TIME", "MSGS/S", "MSGS/S PER TENTH", "LAST÷FIRST", "CLAIM PAGES START/END", "ERRORS")
		for _, r := range d {
			tenths := make([]string, len(r.TenthsPerSec))
			for i, v := range r.TenthsPerSec {
				tenths[i] = rate(v)
			}
			ratio, pages := "-", "-"
			if r.LastOverFirst != nil {
				ratio = fmt.Sprintf("%.2f", *r.LastOverFirst)
			}
			if r.ClaimPagesStart > 0 || r.ClaimPagesEnd > 0 {
				pages = fmt.Sprintf("%d/%d", r.ClaimPagesStart, r.ClaimPagesEnd)
			}
			t.row(r.Scenario, r.Backend, r.Mode, num(r.Consumers), num(r.Concurrency), num(r.Batch), ms(r.HandlerMs), num(r.Messages),
				secs(r.Seconds), rate(r.MsgsPerSec), strings.Join(tenths, " "), ratio, pages, num(r.Errors))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if d := pick("enqueue", "enqueue-unique"); len(d) > 0 {
		section()
		t := newTable(w, "SCENARIO", "BACKEND", "MODE", "BATCH", "MESSAGES", "TIME", "MSGS/S", "CALL MS p50/p95/p99", "ERRORS")
		for _, r := range d {
			t.row(r.Scenario, r.Backend, r.Mode, num(r.Batch), num(r.Messages), secs(r.Seconds), rate(r.MsgsPerSec), pct(r.LatencyMs), num(r.Errors))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if d := pick("workflow"); len(d) > 0 {
		section()
		t := newTable(w, "SCENARIO", "BACKEND", "MODE", "CONCURRENCY", "RUNS", "TIME", "RUNS/S", "TRIGGER→RESULT MS p50/p95/p99")
		for _, r := range d {
			t.row(r.Scenario, r.Backend, r.Mode, num(r.Concurrency), num(r.Messages), secs(r.Seconds), rate(r.MsgsPerSec), pct(r.LatencyMs))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if d := pick("admin-reads"); len(d) > 0 {
		section()
		t := newTable(w, "SCENARIO", "BACKEND", "READ", "ARCHIVED ROWS", "LIVE", "CALL MS p50/p95/p99", "WORST MS")
		for _, r := range d {
			t.row(r.Scenario, r.Backend, r.Mode, num(r.Messages), num(r.Backlog), pct(r.LatencyMs), ms(r.Seconds*1000))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	if d := pick("latency"); len(d) > 0 {
		section()
		t := newTable(w, "SCENARIO", "BACKEND", "MODE", "TARGET/S", "ACHIEVED/S", "MESSAGES", "ENQUEUE→HANDLER MS p50/p95/p99", "ERRORS")
		for _, r := range d {
			t.row(r.Scenario, r.Backend, r.Mode, rate(r.TargetRate), rate(r.MsgsPerSec), num(r.Messages), pct(r.LatencyMs), num(r.Errors))
		}
		if err := t.flush(); err != nil {
			return err
		}
	}
	return nil
}

// table writes aligned columns; call row for each line, then flush.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) { fmt.Fprintln(t.tw, strings.Join(cells, "\t")) }

func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

func num[T ~int | ~int64](n T) string { return strconv.FormatInt(int64(n), 10) }

func ms(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func secs(v float64) string { return strconv.FormatFloat(v, 'f', 2, 64) + "s" }

// rate formats a msgs/s figure with thousands separators.
func rate(v float64) string {
	s := strconv.FormatInt(int64(math.Round(v)), 10)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
