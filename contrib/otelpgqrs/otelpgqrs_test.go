package otelpgqrs_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/contrib/otelpgqrs"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// open returns an installed Store of backend with the middleware, on a
// fresh SQLite file or a fresh Postgres schema.
func open(t *testing.T, backend string, opts ...pgqrs.Option) *pgqrs.Store {
	t.Helper()
	var dsn string
	switch backend {
	case "sqlite":
		dsn = "sqlite:" + t.TempDir() + "/otel.db"
	case "postgres":
		dsn = os.Getenv("PGQRS_TEST_POSTGRES_DSN")
		if dsn == "" {
			if os.Getenv("CI") == "true" {
				t.Fatal("PGQRS_TEST_POSTGRES_DSN is not set")
			}
			t.Skip("set PGQRS_TEST_POSTGRES_DSN to run on PostgreSQL")
		}
		schema := fmt.Sprintf("otel_%d_%d", os.Getpid(), rand.Int64N(1e9))
		opts = append(opts, pgqrs.WithSchema(schema))
		t.Cleanup(func() {
			s, err := pgqrs.Open(context.Background(), dsn)
			if err == nil {
				s.DB().Exec(`DROP SCHEMA IF EXISTS "` + schema + `" CASCADE`)
				s.Close()
			}
		})
	}
	s, err := pgqrs.Open(t.Context(), dsn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Admin().Install(t.Context()); err != nil {
		t.Fatal(err)
	}
	return s
}

func await(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

var quiet = slog.New(slog.DiscardHandler)

// tree renders spans as an indented tree, children under their parent, with
// their events and links.
func tree(spans tracetest.SpanStubs) string {
	byParent := map[trace.SpanID][]tracetest.SpanStub{}
	ids := map[trace.SpanID]bool{}
	for _, s := range spans {
		ids[s.SpanContext.SpanID()] = true
	}
	for _, s := range spans {
		p := s.Parent.SpanID()
		if !ids[p] {
			p = trace.SpanID{}
		}
		byParent[p] = append(byParent[p], s)
	}
	var b strings.Builder
	var walk func(p trace.SpanID, depth int)
	walk = func(p trace.SpanID, depth int) {
		kids := byParent[p]
		sort.SliceStable(kids, func(i, j int) bool { return kids[i].StartTime.Before(kids[j].StartTime) })
		for _, s := range kids {
			pad := strings.Repeat("  ", depth)
			fmt.Fprintf(&b, "%s%s [%s] span=%s status=%s", pad, s.Name, s.SpanKind, s.SpanContext.SpanID(), s.Status.Code)
			for _, l := range s.Links {
				fmt.Fprintf(&b, " link=%s", l.SpanContext.SpanID())
			}
			b.WriteString("\n")
			for _, e := range s.Events {
				fmt.Fprintf(&b, "%s  · %s", pad, e.Name)
				for _, a := range e.Attributes {
					if a.Key != "exception.stacktrace" {
						fmt.Fprintf(&b, " %s=%s", a.Key, a.Value.Emit())
					}
				}
				b.WriteString("\n")
			}
			walk(s.SpanContext.SpanID(), depth+1)
		}
	}
	walk(trace.SpanID{}, 0)
	return b.String()
}

func find(spans tracetest.SpanStubs, prefix string) []tracetest.SpanStub {
	var out []tracetest.SpanStub
	for _, s := range spans {
		if strings.HasPrefix(s.Name, prefix) {
			out = append(out, s)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].StartTime.Before(out[j].StartTime) })
	return out
}

func events(s tracetest.SpanStub) []string {
	var out []string
	for _, e := range s.Events {
		out = append(out, e.Name)
	}
	return out
}

func sum(t *testing.T, rm metricdata.ResourceMetrics, name, queue string) int64 {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != name {
				continue
			}
			var n int64
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, p := range d.DataPoints {
					if v, _ := p.Attributes.Value("messaging.destination.name"); v.AsString() == queue {
						n += p.Value
					}
				}
			case metricdata.Histogram[float64]:
				for _, p := range d.DataPoints {
					if v, _ := p.Attributes.Value("messaging.destination.name"); v.AsString() == queue {
						n += int64(p.Count)
					}
				}
			}
			return n
		}
	}
	return 0
}

func gauge(rm metricdata.ResourceMetrics, queue, state string) (int64, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if g, ok := m.Data.(metricdata.Gauge[int64]); ok && m.Name == "pgqrs.queue.messages" {
				for _, p := range g.DataPoints {
					q, _ := p.Attributes.Value("messaging.destination.name")
					st, _ := p.Attributes.Value("pgqrs.state")
					if q.AsString() == queue && st.AsString() == state {
						return p.Value, true
					}
				}
			}
		}
	}
	return 0, false
}

func TestTracesAndMetrics(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			reader := sdkmetric.NewManualReader()
			mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
			mw, err := otelpgqrs.New(otelpgqrs.WithTracerProvider(tp), otelpgqrs.WithMeterProvider(mp))
			if err != nil {
				t.Fatal(err)
			}
			s := open(t, backend, pgqrs.WithMiddleware(mw))
			reg, err := mw.ObserveQueues(s)
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Unregister()
			ctx := t.Context()
			if _, err := s.Admin().CreateQueue(ctx, "emails"); err != nil {
				t.Fatal(err)
			}
			p, err := s.Producer(ctx, "emails")
			if err != nil {
				t.Fatal(err)
			}
			flaky, err := p.Enqueue(ctx, "flaky") // fails once, then archived
			if err != nil {
				t.Fatal(err)
			}
			doomed, err := p.Enqueue(ctx, "doomed") // dead-lettered
			if err != nil {
				t.Fatal(err)
			}
			// Before any handling: two visible.
			var rm metricdata.ResourceMetrics
			if err := reader.Collect(ctx, &rm); err != nil {
				t.Fatal(err)
			}
			if v, ok := gauge(rm, "emails", "visible"); !ok || v != 2 {
				t.Errorf("visible gauge %d (present %v), want 2", v, ok)
			}
			c, err := s.Consumer(ctx, "emails")
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- c.Run(rctx, func(ctx context.Context, m *pgqrs.Message) error {
					if string(m.Payload) == `"doomed"` {
						return pgqrs.Permanent(errors.New("no such mailbox"))
					}
					if m.ReadCount == 1 {
						return errors.New("smtp timeout")
					}
					return nil
				}, &pgqrs.RunOptions{PollInterval: 20 * time.Millisecond, Backoff: func(int) time.Duration { return 10 * time.Millisecond }, Logger: quiet})
			}()
			await(t, "one archived and one dead letter", func() bool {
				m, err := s.Admin().QueueMetrics(ctx, "emails")
				return err == nil && m.Archived == 1 && m.Dead == 1
			})
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}

			// A workflow of two steps, the second retried once.
			tries := 0
			wf := pgqrs.NewWorkflow("signup", func(ctx context.Context, run *pgqrs.Run, user string) (string, error) {
				if _, err := pgqrs.Step(ctx, run, "create", func(ctx context.Context) (string, error) { return user, nil }); err != nil {
					return "", err
				}
				return pgqrs.Step(ctx, run, "welcome", func(ctx context.Context) (string, error) {
					if tries++; tries == 1 {
						return "", pgqrs.Transient(errors.New("mail down"))
					}
					return "sent", nil
				}, pgqrs.StepRetry(pgqrs.RetryPolicy{Backoff: func(int) time.Duration { return 10 * time.Millisecond }}))
			})
			runID, err := wf.Trigger(ctx, s, "ada")
			if err != nil {
				t.Fatal(err)
			}
			wctx, wstop := context.WithCancel(ctx)
			wdone := make(chan error, 1)
			go func() {
				wdone <- wf.Serve(wctx, s, &pgqrs.RunOptions{PollInterval: 20 * time.Millisecond, Logger: quiet})
			}()
			rctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
			out, err := wf.Result(rctx2, s, runID)
			cancel()
			if err != nil || out != "sent" {
				t.Fatalf("run result %q, %v", out, err)
			}
			await(t, "the run's last span", func() bool {
				runs := find(tracetest.SpanStubsFromReadOnlySpans(rec.Ended()), "pgqrs.workflow.run")
				return len(runs) == 2
			})
			wstop()
			if err := <-wdone; err != nil {
				t.Fatal(err)
			}

			spans := tracetest.SpanStubsFromReadOnlySpans(rec.Ended())
			t.Logf("trace tree as recorded by the SDK's span recorder:\n%s", tree(spans))

			// The message that failed once: one enqueue span, two process
			// spans, each its child and linked to it; retry, then archive.
			enq := find(spans, "pgqrs.enqueue emails")
			if len(enq) != 2 {
				t.Fatalf("%d enqueue spans, want 2", len(enq))
			}
			var procFlaky []tracetest.SpanStub
			for _, sp := range find(spans, "pgqrs.process emails") {
				for _, a := range sp.Attributes {
					if a.Key == "messaging.message.id" && a.Value.AsInt64() == flaky {
						procFlaky = append(procFlaky, sp)
					}
				}
			}
			if len(procFlaky) != 2 {
				t.Fatalf("%d process spans of message %d, want 2", len(procFlaky), flaky)
			}
			enqFlaky := enq[0]
			for i, sp := range procFlaky {
				if sp.Parent.SpanID() != enqFlaky.SpanContext.SpanID() || sp.SpanContext.TraceID() != enqFlaky.SpanContext.TraceID() {
					t.Errorf("process span %d: parent %s, want the enqueue span %s", i, sp.Parent.SpanID(), enqFlaky.SpanContext.SpanID())
				}
				if len(sp.Links) != 1 || sp.Links[0].SpanContext.SpanID() != enqFlaky.SpanContext.SpanID() {
					t.Errorf("process span %d links %v, want the enqueue span", i, sp.Links)
				}
				if sp.SpanKind != trace.SpanKindConsumer {
					t.Errorf("process span kind %v", sp.SpanKind)
				}
			}
			if got := strings.Join(events(procFlaky[0]), ","); got != "pgqrs.retry,exception" {
				t.Errorf("first delivery's events %s, want pgqrs.retry,exception", got)
			}
			if got := strings.Join(events(procFlaky[1]), ","); got != "pgqrs.archive" {
				t.Errorf("second delivery's events %s, want pgqrs.archive", got)
			}
			var deadEvents []string
			for _, sp := range find(spans, "pgqrs.process emails") {
				for _, a := range sp.Attributes {
					if a.Key == "messaging.message.id" && a.Value.AsInt64() == doomed {
						deadEvents = events(sp)
					}
				}
			}
			if strings.Join(deadEvents, ",") != "pgqrs.dead_letter,exception" {
				t.Errorf("dead-lettered message's events %v", deadEvents)
			}

			// The workflow: trigger → run (steps create, welcome: wait) → run (welcome: archive).
			trig := find(spans, "pgqrs.trigger signup")
			runs := find(spans, "pgqrs.workflow.run signup")
			if len(trig) != 1 || len(runs) != 2 {
				t.Fatalf("%d trigger and %d run spans, want 1 and 2", len(trig), len(runs))
			}
			for _, r := range runs {
				if r.Parent.SpanID() != trig[0].SpanContext.SpanID() {
					t.Errorf("run span's parent %s, want the trigger span", r.Parent.SpanID())
				}
				found := false
				for _, a := range r.Attributes {
					found = found || (a.Key == attribute.Key("pgqrs.run.id") && a.Value.AsInt64() == runID)
				}
				if !found {
					t.Errorf("run span without pgqrs.run.id=%d: %v", runID, r.Attributes)
				}
			}
			if got := strings.Join(events(runs[0]), ","); got != "pgqrs.wait" {
				t.Errorf("first run span events %s, want pgqrs.wait", got)
			}
			steps := find(spans, "pgqrs.workflow.step")
			var names []string
			for _, st := range steps {
				names = append(names, fmt.Sprintf("%s<%s", st.Name, parentName(spans, st)))
			}
			want := "pgqrs.workflow.step create<pgqrs.workflow.run signup,pgqrs.workflow.step welcome<pgqrs.workflow.run signup,pgqrs.workflow.step welcome<pgqrs.workflow.run signup"
			if strings.Join(names, ",") != want {
				t.Errorf("step spans %v, want %s", names, want)
			}

			// Metrics.
			rm = metricdata.ResourceMetrics{}
			if err := reader.Collect(ctx, &rm); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name, queue string
				want        int64
			}{
				{"pgqrs.messages.enqueued", "emails", 2},
				{"pgqrs.messages.handled", "emails", 1},
				{"pgqrs.messages.failed", "emails", 2},
				{"pgqrs.messages.dead_lettered", "emails", 1},
				{"pgqrs.handler.duration", "emails", 3},
				{"pgqrs.message.latency", "emails", 2}, // first deliveries only
				{"pgqrs.messages.enqueued", "signup", 1},
				{"pgqrs.messages.handled", "signup", 1},
				{"pgqrs.handler.duration", "signup", 2},
			} {
				if got := sum(t, rm, c.name, c.queue); got != c.want {
					t.Errorf("%s{queue=%s} = %d, want %d", c.name, c.queue, got, c.want)
				}
			}
			for state, want := range map[string]int64{"visible": 0, "leased": 0, "archived": 1, "dead": 1} {
				if v, ok := gauge(rm, "emails", state); !ok || v != want {
					t.Errorf("gauge pgqrs.queue.messages{queue=emails,state=%s} = %d (present %v), want %d", state, v, ok, want)
				}
			}
		})
	}
}

func parentName(spans tracetest.SpanStubs, s tracetest.SpanStub) string {
	for _, p := range spans {
		if p.SpanContext.SpanID() == s.Parent.SpanID() {
			return p.Name
		}
	}
	return "-"
}

func TestObserveQueuesNil(t *testing.T) {
	mw, err := otelpgqrs.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mw.ObserveQueues(nil); !errors.Is(err, pgqrs.ErrInvalidArgument) {
		t.Fatalf("ObserveQueues(nil): %v", err)
	}
}
