package pgqrs

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The Prometheus text exposition format (version 0.0.4), written by hand so
// the module needs no Prometheus client. The names are those of
// docs/observability.md; contrib/prompgqrs exposes the same through
// client_golang.

// WritePrometheus writes the metrics of every queue ([Admin.AllQueueMetrics])
// to w in the Prometheus text format, for a scrape endpoint or `pgqrs
// metrics --prometheus`:
//
//	pgqrs_queue_messages{queue,state}          gauge: visible, leased, delayed, archived, dead
//	pgqrs_queue_oldest_pending_age_seconds{queue}  gauge
//	pgqrs_queue_paused{queue}                  gauge: 1 while paused
//
// Serve it with the content type "text/plain; version=0.0.4; charset=utf-8".
// It reads the metrics with one statement: counters kept by triggers on
// PostgreSQL, row counts on SQLite and Turso (see [Admin.QueueMetrics]).
func (a *Admin) WritePrometheus(ctx context.Context, w io.Writer) error {
	ms, err := a.AllQueueMetrics(ctx)
	if err != nil {
		return err
	}
	return writePrometheus(w, ms)
}

func writePrometheus(w io.Writer, ms []QueueMetrics) error {
	b := bufio.NewWriter(w)
	family := func(name, help string) {
		fmt.Fprintf(b, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name)
	}
	family("pgqrs_queue_messages", "Messages of a queue by state (visible, leased, delayed, archived, dead).")
	for _, m := range ms {
		for _, st := range []struct {
			state string
			n     int64
		}{{"visible", m.Visible}, {"leased", m.Leased}, {"delayed", m.Delayed}, {"archived", m.Archived}, {"dead", m.Dead}} {
			fmt.Fprintf(b, "pgqrs_queue_messages{queue=\"%s\",state=\"%s\"} %d\n", labelValue(m.Queue), st.state, st.n)
		}
	}
	family("pgqrs_queue_oldest_pending_age_seconds", "Age of the oldest message not leased, by the database clock; 0 when none.")
	for _, m := range ms {
		fmt.Fprintf(b, "pgqrs_queue_oldest_pending_age_seconds{queue=\"%s\"} %s\n", labelValue(m.Queue), strconv.FormatFloat(m.OldestPendingAge.Seconds(), 'g', -1, 64))
	}
	family("pgqrs_queue_paused", "1 while the queue is paused, else 0.")
	for _, m := range ms {
		paused := 0
		if m.Paused {
			paused = 1
		}
		fmt.Fprintf(b, "pgqrs_queue_paused{queue=\"%s\"} %d\n", labelValue(m.Queue), paused)
	}
	return b.Flush()
}

// labelValue escapes a label value: backslash, double quote and line feed.
var labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)

func labelValue(s string) string { return labelEscaper.Replace(s) }
