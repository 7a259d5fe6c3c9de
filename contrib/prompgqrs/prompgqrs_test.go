package prompgqrs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/contrib/prompgqrs"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	_ "modernc.org/sqlite"
)

func open(t *testing.T, backend string, opts ...pgqrs.Option) *pgqrs.Store {
	t.Helper()
	var dsn string
	switch backend {
	case "sqlite":
		dsn = "sqlite:" + t.TempDir() + "/prom.db"
	case "postgres":
		dsn = os.Getenv("PGQRS_TEST_POSTGRES_DSN")
		if dsn == "" {
			if os.Getenv("CI") == "true" {
				t.Fatal("PGQRS_TEST_POSTGRES_DSN is not set")
			}
			t.Skip("set PGQRS_TEST_POSTGRES_DSN to run on PostgreSQL")
		}
		schema := fmt.Sprintf("prom_%d_%d", os.Getpid(), rand.Int64N(1e9))
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

// value finds the sample of family name whose labels include want.
func value(fams map[string]*dto.MetricFamily, name string, want map[string]string) (float64, bool) {
	f, ok := fams[name]
	if !ok {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		match := true
		for k, v := range want {
			found := false
			for _, l := range m.GetLabel() {
				found = found || (l.GetName() == k && l.GetValue() == v)
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func TestCollectorAndTextFormat(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			col := prompgqrs.New()
			s := open(t, backend, pgqrs.WithMiddleware(col))
			col.Observe(s)
			reg := prometheus.NewPedanticRegistry()
			reg.MustRegister(col)
			ctx := t.Context()
			if _, err := s.Admin().CreateQueue(ctx, "emails"); err != nil {
				t.Fatal(err)
			}
			p, err := s.Producer(ctx, "emails")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := p.EnqueueBatch(ctx, []any{"ok", "flaky", "doomed"}); err != nil {
				t.Fatal(err)
			}
			if _, err := p.Enqueue(ctx, "later", pgqrs.Delay(time.Hour)); err != nil {
				t.Fatal(err)
			}
			c, err := s.Consumer(ctx, "emails")
			if err != nil {
				t.Fatal(err)
			}
			rctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() {
				done <- c.Run(rctx, func(ctx context.Context, m *pgqrs.Message) error {
					switch string(m.Payload) {
					case `"doomed"`:
						return pgqrs.Permanent(errors.New("bad address"))
					case `"flaky"`:
						if m.ReadCount == 1 {
							return errors.New("timeout")
						}
					}
					return nil
				}, &pgqrs.RunOptions{PollInterval: 20 * time.Millisecond, Backoff: func(int) time.Duration { return 10 * time.Millisecond },
					Logger: slog.New(slog.DiscardHandler)})
			}()
			for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				m, err := s.Admin().QueueMetrics(ctx, "emails")
				if err == nil && m.Archived == 2 && m.Dead == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("timed out: %+v %v", m, err)
				}
			}
			stop()
			if err := <-done; err != nil {
				t.Fatal(err)
			}

			// The collector, through client_golang's registry (pedantic: it
			// checks descriptors and metric consistency).
			got, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			fams := map[string]*dto.MetricFamily{}
			for _, f := range got {
				fams[f.GetName()] = f
			}
			// The core module's hand-written text format, parsed by
			// Prometheus's own parser.
			var text bytes.Buffer
			if err := s.Admin().WritePrometheus(ctx, &text); err != nil {
				t.Fatal(err)
			}
			parser := expfmt.NewTextParser(model.LegacyValidation)
			parsed, err := parser.TextToMetricFamilies(bytes.NewReader(text.Bytes()))
			if err != nil {
				t.Fatalf("the text format does not parse: %v\n%s", err, text.String())
			}
			for _, c := range []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"pgqrs_queue_messages", map[string]string{"queue": "emails", "state": "archived"}, 2},
				{"pgqrs_queue_messages", map[string]string{"queue": "emails", "state": "dead"}, 1},
				{"pgqrs_queue_messages", map[string]string{"queue": "emails", "state": "delayed"}, 1},
				{"pgqrs_queue_messages", map[string]string{"queue": "emails", "state": "visible"}, 0},
				{"pgqrs_queue_messages", map[string]string{"queue": "emails", "state": "leased"}, 0},
				{"pgqrs_queue_paused", map[string]string{"queue": "emails"}, 0},
			} {
				for source, fs := range map[string]map[string]*dto.MetricFamily{"collector": fams, "text format": parsed} {
					if v, ok := value(fs, c.name, c.labels); !ok || v != c.want {
						t.Errorf("%s: %s%v = %v (present %v), want %v", source, c.name, c.labels, v, ok, c.want)
					}
				}
				if fams[c.name].GetType() != parsed[c.name].GetType() || fams[c.name].GetHelp() != parsed[c.name].GetHelp() {
					t.Errorf("%s: collector and text format disagree on type or help", c.name)
				}
			}
			if _, ok := parsed["pgqrs_queue_oldest_pending_age_seconds"]; !ok {
				t.Errorf("text format lacks pgqrs_queue_oldest_pending_age_seconds")
			}
			for _, c := range []struct {
				name   string
				labels map[string]string
				want   float64
			}{
				{"pgqrs_messages_enqueued_total", map[string]string{"queue": "emails"}, 4},
				{"pgqrs_messages_handled_total", map[string]string{"queue": "emails"}, 2},
				{"pgqrs_messages_failed_total", map[string]string{"queue": "emails"}, 2},
				{"pgqrs_messages_dead_lettered_total", map[string]string{"queue": "emails"}, 1},
				{"pgqrs_message_latency_seconds", map[string]string{"queue": "emails"}, 3},
				{"pgqrs_handler_duration_seconds", map[string]string{"queue": "emails", "outcome": "retry"}, 1},
				{"pgqrs_handler_duration_seconds", map[string]string{"queue": "emails", "outcome": "dead_letter"}, 1},
				{"pgqrs_handler_duration_seconds", map[string]string{"queue": "emails", "outcome": "archive"}, 2},
			} {
				if v, ok := value(fams, c.name, c.labels); !ok || v != c.want {
					t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, v, ok, c.want)
				}
			}
		})
	}
}

func TestCollectFailureFailsTheScrape(t *testing.T) {
	col := prompgqrs.New()
	s := open(t, "sqlite")
	col.Observe(s)
	s.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(col)
	if _, err := reg.Gather(); !errors.Is(err, pgqrs.ErrClosed) {
		t.Fatalf("gather from a closed store: %v, want ErrClosed", err)
	}
}
