package ui_test

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

	"github.com/pgqrs/pgqrs-go"

	_ "github.com/lib/pq"
	_ "github.com/tursodatabase/libsql-client-go/libsql"
	_ "modernc.org/sqlite"
)

// The hostile strings every test puts where users' data goes: payloads,
// headers, errors, run inputs, signals, events.
const (
	xssScript = `<script>alert(1)</script>`
	xssImg    = `"><img src=x onerror=alert(1)>`
	xssErr    = `<img src=x onerror=alert(2)> charge declined`
)

// backends are the subtests of every handler test.
var backends = []string{"sqlite", "postgres", "turso-http", "turso-ws"}

var schemaSeq atomic.Int64

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

// tursoMu serialises the Turso subtests: the ui package has one sqld
// (PGQRS_TEST_UI_TURSO_URL) of its own, whose database each test wipes.
var tursoMu sync.Mutex

// openStore returns an installed, empty store of backend, and its DSN.
func openStore(t *testing.T, backend string) (*pgqrs.Store, string) {
	t.Helper()
	var dsn string
	var opts []pgqrs.Option
	switch backend {
	case "sqlite":
		dsn = "sqlite:" + t.TempDir() + "/ui.db"
	case "postgres":
		dsn = needEnv(t, "PGQRS_TEST_POSTGRES_DSN", "PostgreSQL server")
		schema := fmt.Sprintf("ui_%d_%d", os.Getpid(), schemaSeq.Add(1))
		opts = append(opts, pgqrs.WithSchema(schema))
		t.Cleanup(func() {
			s, err := pgqrs.Open(context.Background(), dsn)
			if err != nil {
				t.Errorf("drop schema: %v", err)
				return
			}
			defer s.Close()
			if _, err := s.DB().Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`); err != nil {
				t.Errorf("drop schema %s: %v", schema, err)
			}
		})
	case "turso-http", "turso-ws":
		dsn = needEnv(t, "PGQRS_TEST_UI_TURSO_URL", "libSQL server (sqld) for the ui package")
		if backend == "turso-ws" {
			dsn = "ws" + strings.TrimPrefix(dsn, "http")
		}
		tursoMu.Lock()
		t.Cleanup(tursoMu.Unlock)
	default:
		t.Fatalf("unknown backend %q", backend)
	}
	s, err := pgqrs.Open(context.Background(), dsn, opts...)
	if err != nil {
		t.Fatalf("open %s: %v", backend, err)
	}
	t.Cleanup(func() { s.Close() })
	if strings.HasPrefix(backend, "turso") {
		wipe(t, s)
	}
	if err := s.Admin().Install(t.Context()); err != nil {
		t.Fatalf("install: %v", err)
	}
	return s, dsn
}

// wipe drops pgqrs's tables and views from the shared sqld database.
func wipe(t *testing.T, s *pgqrs.Store) {
	t.Helper()
	rows, err := s.DB().Query(`SELECT type, name FROM sqlite_master WHERE name LIKE 'pgqrs%' AND type IN ('view', 'table') ORDER BY type = 'table'`)
	if err != nil {
		t.Fatalf("wipe: %v", err)
	}
	var drops []string
	for rows.Next() {
		var typ, name string
		if err := rows.Scan(&typ, &name); err != nil {
			t.Fatalf("wipe: %v", err)
		}
		drops = append(drops, "DROP "+strings.ToUpper(typ)+" IF EXISTS "+name)
	}
	rows.Close()
	// Foreign keys: drop until nothing is left (a few rounds at most).
	for round := 0; len(drops) > 0 && round < 10; round++ {
		var left []string
		for _, d := range drops {
			if _, err := s.DB().Exec(d); err != nil {
				left = append(left, d)
			}
		}
		drops = left
	}
	if len(drops) > 0 {
		t.Fatalf("wipe: could not run %v", drops)
	}
}

// await polls cond until it holds or within passes.
func await(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// seeded is what seed put in the store.
type seeded struct {
	dead       []int64 // dead letters of "emails"
	visible    []int64 // visible messages of "emails" (hostile payloads)
	leased     int64
	consumer   int64 // the worker holding leased
	okRun      int64 // order run that succeeded, with a child, a signal and an event
	failedRun  int64 // order run that failed: retry
	pausedRun  int64 // order run paused: resume
	queuedRun  int64 // report run nobody serves: cancel
	childRun   int64
	drainCount int // visible messages of "payments"
}

type orderIn struct {
	Item  string `json:"item"`
	Fail  bool   `json:"fail,omitempty"`
	Pause bool   `json:"pause,omitempty"`
}

type orderOut struct {
	Receipt string `json:"receipt"`
}

// seed fills s with every kind of thing the dashboard shows, with hostile
// strings wherever a user's data goes.
func seed(t *testing.T, s *pgqrs.Store) seeded {
	t.Helper()
	ctx := t.Context()
	a := s.Admin()
	var out seeded
	for _, q := range []string{"emails", "payments", "reports"} {
		if _, err := a.CreateQueue(ctx, q); err != nil {
			t.Fatalf("create %s: %v", q, err)
		}
	}
	p, err := s.Producer(ctx, "emails", pgqrs.WithWorkerName("api-1"))
	if err != nil {
		t.Fatal(err)
	}
	// Two that succeed, two that die with a hostile error.
	for _, payload := range []string{`{"to":"a@example.com"}`, `{"to":"b@example.com"}`,
		`{"fail":"` + strings.ReplaceAll(xssImg, `"`, `\"`) + `"}`, `{"fail":"` + xssScript + `"}`} {
		if _, err := p.Enqueue(ctx, []byte(payload), pgqrs.Header("trace", xssImg)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := s.Consumer(ctx, "emails", pgqrs.WithWorkerName("mailer-1"))
	if err != nil {
		t.Fatal(err)
	}
	rctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- c.Run(rctx, func(ctx context.Context, m *pgqrs.Message) error {
			if strings.Contains(string(m.Payload), "fail") {
				return errors.New(xssErr)
			}
			return nil
		}, &pgqrs.RunOptions{MaxAttempts: 1, PollInterval: 50 * time.Millisecond})
	}()
	await(t, 20*time.Second, "two archived and two dead", func() bool {
		m, err := a.QueueMetrics(ctx, "emails")
		return err == nil && m.Archived == 2 && m.Dead == 2
	})
	stop()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	dl, err := a.ListDeadLetters(ctx, "emails", pgqrs.ArchivePage{})
	if err != nil || len(dl) != 2 {
		t.Fatalf("dead letters: %v, %v", dl, err)
	}
	for _, m := range dl {
		out.dead = append(out.dead, m.ID)
	}

	// One leased, two visible with hostile payloads and headers, one delayed.
	if out.leased, err = p.Enqueue(ctx, map[string]string{"to": "c@example.com"}); err != nil {
		t.Fatal(err)
	}
	c2, err := s.Consumer(ctx, "emails", pgqrs.WithWorkerName("mailer-2"))
	if err != nil {
		t.Fatal(err)
	}
	if ms, err := c2.Dequeue(ctx, 1, pgqrs.VisibilityTimeout(time.Hour)); err != nil || len(ms) != 1 || ms[0].ID != out.leased {
		t.Fatalf("lease: %v, %v", ms, err)
	}
	out.consumer = c2.ID()
	for _, payload := range []any{xssScript, map[string]string{"html": xssImg}} {
		id, err := p.Enqueue(ctx, payload, pgqrs.Headers(map[string]string{"x-evil": xssImg, xssScript: "key"}), pgqrs.Priority(2))
		if err != nil {
			t.Fatal(err)
		}
		out.visible = append(out.visible, id)
	}
	if _, err := p.Enqueue(ctx, map[string]string{"to": "later@example.com"}, pgqrs.Delay(time.Hour)); err != nil {
		t.Fatal(err)
	}

	// A queue with work for a consumer to drain, one for pausing.
	pp, err := s.Producer(ctx, "payments", pgqrs.WithWorkerName("billing"))
	if err != nil {
		t.Fatal(err)
	}
	out.drainCount = 40
	batch := make([]any, out.drainCount)
	for i := range batch {
		batch[i] = map[string]any{"invoice": 1000 + i, "cents": 995 * (i + 1)}
	}
	if _, err := pp.EnqueueBatch(ctx, batch); err != nil {
		t.Fatal(err)
	}

	// Workflows: a run with steps, a retried step, a child, a signal and an
	// event; a failed run; a paused run; a queued run nobody serves.
	var attempts sync.Map
	notify := pgqrs.NewWorkflow("notify", func(ctx context.Context, run *pgqrs.Run, in string) (string, error) {
		return pgqrs.Step(ctx, run, "send", func(ctx context.Context) (string, error) { return "sent " + in, nil })
	})
	order := pgqrs.NewWorkflow("order", func(ctx context.Context, run *pgqrs.Run, in orderIn) (orderOut, error) {
		var o orderOut
		if _, err := pgqrs.Step(ctx, run, "reserve", func(ctx context.Context) (string, error) { return "reserved " + in.Item, nil }); err != nil {
			return o, err
		}
		if in.Pause {
			if _, err := pgqrs.Step(ctx, run, "hold", func(ctx context.Context) (int, error) { return 0, pgqrs.Pause(time.Time{}) }); err != nil {
				return o, err
			}
		}
		_, err := pgqrs.Step(ctx, run, "charge", func(ctx context.Context) (int, error) {
			if in.Fail {
				return 0, pgqrs.Permanent(errors.New(xssErr))
			}
			if n, _ := attempts.LoadOrStore(run.ID(), new(atomic.Int32)); n.(*atomic.Int32).Add(1) == 1 {
				return 0, pgqrs.Transient(errors.New("gateway timeout " + xssScript))
			}
			return 995, nil
		}, pgqrs.StepRetry(pgqrs.RetryPolicy{Backoff: func(int) time.Duration { return 10 * time.Millisecond }}))
		if err != nil {
			return o, err
		}
		child, err := pgqrs.StartChild(ctx, run, "notify", notify, in.Item)
		if err != nil {
			return o, err
		}
		if _, err := pgqrs.AwaitChildren[string](ctx, run, "await-notify", child); err != nil {
			return o, err
		}
		approval, _, err := pgqrs.Recv[string](ctx, run, "approval", "approve", time.Minute)
		if err != nil {
			return o, err
		}
		if err := pgqrs.SetEvent(ctx, run, "receipt", map[string]string{"by": approval}); err != nil {
			return o, err
		}
		o.Receipt = "R-" + in.Item
		return o, nil
	})
	report := pgqrs.NewWorkflow("report", func(ctx context.Context, run *pgqrs.Run, in string) (string, error) { return in, nil })
	for _, reg := range []func(context.Context, *pgqrs.Store) error{notify.Register, order.Register, report.Register} {
		if err := reg(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if out.okRun, err = order.Trigger(ctx, s, orderIn{Item: xssScript}); err != nil {
		t.Fatal(err)
	}
	if err := s.Runs().Send(ctx, out.okRun, "approve", xssImg); err != nil {
		t.Fatal(err)
	}
	if out.failedRun, err = order.Trigger(ctx, s, orderIn{Item: "book", Fail: true}); err != nil {
		t.Fatal(err)
	}
	if out.pausedRun, err = order.Trigger(ctx, s, orderIn{Item: "lamp", Pause: true}); err != nil {
		t.Fatal(err)
	}
	if out.queuedRun, err = report.Trigger(ctx, s, "weekly "+xssImg); err != nil {
		t.Fatal(err)
	}
	wctx, wstop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	opts := &pgqrs.RunOptions{PollInterval: 50 * time.Millisecond}
	wg.Go(func() { _ = order.Serve(wctx, s, opts, pgqrs.WithWorkerName("orders-1")) })
	wg.Go(func() { _ = notify.Serve(wctx, s, opts, pgqrs.WithWorkerName("notify-1")) })
	status := func(id int64) pgqrs.RunStatus {
		r, err := s.Runs().Get(ctx, id)
		if err != nil {
			t.Fatalf("get run %d: %v", id, err)
		}
		return r.Status
	}
	await(t, 30*time.Second, "the order runs to settle", func() bool {
		return status(out.okRun) == pgqrs.RunSucceeded && status(out.failedRun) == pgqrs.RunFailed && status(out.pausedRun) == pgqrs.RunPaused
	})
	wstop()
	wg.Wait()
	children, err := s.Runs().List(ctx, pgqrs.RunFilter{Parent: out.okRun})
	if err != nil || len(children) != 1 {
		t.Fatalf("children: %v, %v", children, err)
	}
	out.childRun = children[0].ID

	// Schedules: one active on a queue, one paused on a workflow.
	if _, err := s.Schedules().Add(ctx, pgqrs.Schedule{Name: "nightly-digest", Cron: "0 3 * * *", TimeZone: "Europe/Berlin",
		Queue: "reports", Payload: map[string]string{"kind": xssScript}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Schedules().Add(ctx, pgqrs.Schedule{Name: "every-5m", Cron: "@every 5m", Workflow: "report", Payload: "five"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Schedules().Pause(ctx, "every-5m"); err != nil {
		t.Fatal(err)
	}
	return out
}
