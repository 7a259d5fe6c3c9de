package main

import (
	"bytes"
	"context"
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

// The JSON documents printed with --json are pgqrs's own result types
// (pgqrs.Message, pgqrs.QueueMetrics, pgqrs.RunInfo, ...), which marshal
// with snake_case names: one definition for the library and the CLI.
// docs/cli.md shows each shape.

// jsonList returns xs, or an empty slice for nil, so that JSON shows [].
func jsonList[T any](xs []T) []T {
	if xs == nil {
		return []T{}
	}
	return xs
}

func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// query opens the Store, asks it for one result and prints that: one JSON
// document with --json, else what text writes. Nothing is printed when ask
// fails. The commands that read or change something and report the result
// go through here.
func query[T any](ctx context.Context, c *cli, ask func(*pgqrs.Store) (T, error), text func(io.Writer, T) error) error {
	s, err := c.open(ctx)
	if err != nil {
		return err
	}
	v, err := ask(s)
	if err != nil {
		return err
	}
	return c.show(v, func(w io.Writer) error { return text(w, v) })
}

// show prints v as one JSON document with --json, else what text writes.
func (c *cli) show(v any, text func(io.Writer) error) error {
	if c.json {
		return printJSON(c.stdout, v)
	}
	return text(c.stdout)
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
	t := newTable(w, "QUEUE", "PENDING", "VISIBLE", "LEASED", "DELAYED", "ARCHIVED", "DEAD", "OLDEST PENDING", "PAUSED", "IN FLIGHT", "LIMITS")
	for _, m := range ms {
		oldest := "-"
		if !m.OldestPending.IsZero() {
			oldest = m.OldestPendingAge.Round(time.Second).String()
		}
		paused := "-"
		if m.Paused {
			paused = "yes"
		}
		t.row(m.Queue, num(m.Pending), num(m.Visible), num(m.Leased), num(m.Delayed), num(m.Archived), num(m.Dead), oldest, paused,
			inFlightCell(m.Limits, m.InFlight), m.Limits.String())
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

// headersCell renders a message's headers as one JSON object (keys
// sorted), cut to a readable width; "-" for none.
func headersCell(h map[string]string) string {
	if len(h) == 0 {
		return "-"
	}
	b, _ := json.Marshal(h) // a map of strings always encodes
	return jsonCell(b, 40)
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
