package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

var pageNames = []string{"overview", "queue", "workers", "workflows", "run", "schedules", "error"}

// templates are the parsed pages, shared by every Handler (they are
// embedded, so a parse error is a bug the tests catch).
var templates = sync.OnceValue(parsePages)

// parsePages parses each page with the layout and the shared partials.
func parsePages() map[string]*template.Template {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t := template.New(name).Funcs(funcs)
		pages[name] = template.Must(t.ParseFS(assets, "assets/templates/layout.html",
			"assets/templates/partials.html", "assets/templates/"+name+".html"))
	}
	return pages
}

var funcs = template.FuncMap{
	"ago":      ago,
	"at":       at,
	"dur":      dur,
	"pretty":   pretty,
	"short":    short,
	"lower":    func(s any) string { return strings.ToLower(fmt.Sprint(s)) },
	"durs":     func(sec float64) time.Duration { return time.Duration(sec * float64(time.Second)) },
	"add":      func(a, b float64) float64 { return a + b },
	"columns":  func() []queueColumn { return queueColumns },
	"bars":     bars,
	"line":     line,
	"finished": func(s pgqrs.RunStatus) bool { return s.Finished() },
	"pct":      func(f float64) string { return fmt.Sprintf("%.2f", f) },
	"headers": func(h map[string]string) string {
		if len(h) == 0 {
			return ""
		}
		b, _ := json.Marshal(h)
		return string(b)
	},
	"dict": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[fmt.Sprint(kv[i])] = kv[i+1]
		}
		return m
	},
}

// ago is a time relative to now: "12s ago", "in 3m"; "—" for none.
func ago(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	d := time.Since(t)
	if d < 0 {
		return "in " + dur(-d)
	}
	return dur(d) + " ago"
}

// at is a time in full, UTC.
func at(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

// dur is a duration rounded for reading.
func dur(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "0ms"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

const maxShown = 4096

// pretty indents JSON for a <pre>, cut at maxShown bytes.
func pretty(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		b.Reset()
		b.Write(raw)
	}
	return cut(unescapeHTML(b.String()), maxShown)
}

// short is JSON on one line, cut at n bytes.
func short(raw json.RawMessage, n int) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		b.Reset()
		b.Write(raw)
	}
	return cut(unescapeHTML(b.String()), n)
}

// unescapeHTML turns the \u003c, \u003e and \u0026 escapes that Go's
// encoding/json writes for <, > and & back into the characters, so that a
// payload reads as it was sent (the template escapes it for HTML). Escapes
// are two-character tokens from a backslash on, so an escaped backslash
// followed by "u003c" stays as it is.
func unescapeHTML(s string) string {
	if !strings.Contains(s, `\u00`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		if s[i+1] == 'u' && i+6 <= len(s) {
			switch s[i+2 : i+6] {
			case "003c", "003C":
				b.WriteByte('<')
				i += 5
				continue
			case "003e", "003E":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		b.WriteString(s[i : i+2])
		i++
	}
	return b.String()
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8Start(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func utf8Start(b byte) bool { return b&0xC0 != 0x80 }

// Charts: small inline SVGs built from numbers only (the title is escaped),
// so they need no script and no external file. The page's script draws the
// same shapes from the JSON when it updates them (app.js: drawBars,
// drawLine).

const chartW, chartH = 150.0, 32.0

// bars charts messages archived per minute.
func bars(points []pgqrs.ThroughputPoint) template.HTML {
	top := 1.0
	var last int64
	for _, p := range points {
		top = math.Max(top, float64(p.Archived))
		last = p.Archived
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="messages processed per minute, last %d minutes; this minute %d">`,
		chartW, chartH, chartW, chartH, len(points), last)
	w := chartW / float64(max(1, len(points)))
	for i, p := range points {
		h := math.Max(0.5, chartH*float64(p.Archived)/top)
		fmt.Fprintf(&b, `<rect x="%.2f" y="%.2f" width="%.2f" height="%.2f"><title>%s: %d</title></rect>`,
			float64(i)*w+0.5, chartH-h, math.Max(0.5, w-1), h, template.HTMLEscapeString(p.Minute.Format("15:04")), p.Archived)
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// line charts the average enqueue→start latency per minute.
func line(points []pgqrs.ThroughputPoint) template.HTML {
	top := 0.001
	for _, p := range points {
		top = math.Max(top, p.AvgLatency.Seconds())
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart line" viewBox="0 0 %g %g" width="%g" height="%g" role="img" aria-label="average wait from enqueue to start per minute; longest %s">`,
		chartW, chartH, chartW, chartH, template.HTMLEscapeString(dur(time.Duration(top*float64(time.Second)))))
	b.WriteString(`<polyline points="`)
	step := chartW / float64(max(1, len(points)-1))
	for i, p := range points {
		y := chartH - 1 - (chartH-2)*p.AvgLatency.Seconds()/top
		fmt.Fprintf(&b, "%.2f,%.2f ", float64(i)*step, y)
	}
	b.WriteString(`"/></svg>`)
	return template.HTML(b.String())
}
