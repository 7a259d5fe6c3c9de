package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/pgqrs/pgqrs-go"
)

// The JSON documents printed with --json. Field names are snake_case and
// stable; times are RFC 3339 in UTC; a time that does not apply is null.
// docs/cli.md shows each shape.

// messageJSON is a live message, as recv prints it.
type messageJSON struct {
	ID         int64           `json:"id"`
	Queue      string          `json:"queue"`
	Payload    json.RawMessage `json:"payload"`
	ReadCount  int             `json:"read_count"`
	EnqueuedAt time.Time       `json:"enqueued_at"`
	VisibleAt  time.Time       `json:"visible_at"`
	LastError  string          `json:"last_error,omitempty"`
}

func newMessageJSON(m *pgqrs.Message) messageJSON {
	return messageJSON{
		ID: m.ID, Queue: m.Queue, Payload: m.Payload, ReadCount: m.ReadCount,
		EnqueuedAt: m.EnqueuedAt.UTC(), VisibleAt: m.VisibleAt.UTC(), LastError: m.LastError,
	}
}

// archivedJSON is an archived message or a dead letter.
type archivedJSON struct {
	ID         int64           `json:"id"`
	Queue      string          `json:"queue"`
	Payload    json.RawMessage `json:"payload"`
	ReadCount  int             `json:"read_count"`
	EnqueuedAt time.Time       `json:"enqueued_at"`
	ArchivedAt time.Time       `json:"archived_at"`
	Dead       bool            `json:"dead"`
	LastError  string          `json:"last_error,omitempty"`
}

func newArchivedJSON(m *pgqrs.ArchivedMessage) archivedJSON {
	return archivedJSON{
		ID: m.ID, Queue: m.Queue, Payload: m.Payload, ReadCount: m.ReadCount,
		EnqueuedAt: m.EnqueuedAt.UTC(), ArchivedAt: m.ArchivedAt.UTC(), Dead: m.Dead, LastError: m.LastError,
	}
}

// metricsJSON is one queue's counts.
type metricsJSON struct {
	Queue                   string     `json:"queue"`
	Pending                 int64      `json:"pending"`
	Visible                 int64      `json:"visible"`
	Leased                  int64      `json:"leased"`
	Delayed                 int64      `json:"delayed"`
	Archived                int64      `json:"archived"`
	Dead                    int64      `json:"dead"`
	OldestPendingAgeSeconds float64    `json:"oldest_pending_age_seconds"`
	OldestPendingAt         *time.Time `json:"oldest_pending_at"`
}

func newMetricsJSON(m pgqrs.QueueMetrics) metricsJSON {
	return metricsJSON{
		Queue: m.Queue, Pending: m.Pending, Visible: m.Visible, Leased: m.Leased, Delayed: m.Delayed,
		Archived: m.Archived, Dead: m.Dead,
		OldestPendingAgeSeconds: m.OldestPendingAge.Seconds(),
		OldestPendingAt:         nullTime(m.OldestPending),
	}
}

// queueJSON is a queue.
type queueJSON struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

func newQueueJSON(q *pgqrs.Queue) queueJSON {
	return queueJSON{ID: q.ID, Name: q.Name, CreatedAt: q.CreatedAt.UTC()}
}

// workerJSON is a registered producer or consumer.
type workerJSON struct {
	ID          int64      `json:"id"`
	Name        string     `json:"name"`
	Queue       string     `json:"queue"`
	Role        string     `json:"role"`
	Status      string     `json:"status"`
	StartedAt   time.Time  `json:"started_at"`
	HeartbeatAt time.Time  `json:"heartbeat_at"`
	StoppedAt   *time.Time `json:"stopped_at"`
}

func newWorkerJSON(w pgqrs.WorkerInfo) workerJSON {
	return workerJSON{
		ID: w.ID, Name: w.Name, Queue: w.Queue, Role: w.Role, Status: string(w.Status),
		StartedAt: w.StartedAt.UTC(), HeartbeatAt: w.HeartbeatAt.UTC(), StoppedAt: nullTime(w.StoppedAt),
	}
}

// healthJSON counts workers by state.
type healthJSON struct {
	Queue       *string `json:"queue"` // null: all queues
	Ready       int64   `json:"ready"`
	Polling     int64   `json:"polling"`
	Suspended   int64   `json:"suspended"`
	Interrupted int64   `json:"interrupted"`
	Stopped     int64   `json:"stopped"`
	Stale       int64   `json:"stale"`
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// printJSON writes v as one indented JSON document.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// table writes aligned columns; call row for each line, then flush.
type table struct {
	tw *tabwriter.Writer
}

// newTable starts a table with the given header row (none if empty).
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) {
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error {
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

// metricsTable writes queue metrics as a table.
func metricsTable(w io.Writer, ms []pgqrs.QueueMetrics) error {
	t := newTable(w, "QUEUE", "PENDING", "VISIBLE", "LEASED", "DELAYED", "ARCHIVED", "DEAD", "OLDEST PENDING")
	for _, m := range ms {
		oldest := "-"
		if !m.OldestPending.IsZero() {
			oldest = m.OldestPendingAge.Round(time.Second).String()
		}
		t.row(m.Queue, num(m.Pending), num(m.Visible), num(m.Leased), num(m.Delayed), num(m.Archived), num(m.Dead), oldest)
	}
	return t.flush()
}

func num[T ~int | ~int64](n T) string { return strconv.FormatInt(int64(n), 10) }

// timeCell formats t for a table: local time to the second, "-" when zero.
func timeCell(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format(time.DateTime)
}

// payloadCell renders a payload compactly on one line, cut to a readable
// width.
func payloadCell(p json.RawMessage) string { return jsonCell(p, 60) }

// jsonCell renders JSON compactly on one line, cut to width runes; "-"
// when there is none.
func jsonCell(p json.RawMessage, width int) string {
	var b bytes.Buffer
	if json.Compact(&b, p) != nil {
		return clip(string(p), width) // not JSON: at least one line
	}
	return cut(b.String(), width)
}

// errorCell renders a last error on one line, cut to a readable width.
func errorCell(s string) string { return clip(s, 50) }

// clip renders text on one line, its runs of white space made single
// spaces, cut to width runes; "-" when empty.
func clip(s string, width int) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	return cut(s, width)
}

// cut shortens s to width runes, the last one "…" when it had to cut.
func cut(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:width-1]) + "…"
}
