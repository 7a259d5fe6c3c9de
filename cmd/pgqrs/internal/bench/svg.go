package bench

// Standalone SVG charts of bench results, drawn with the standard library:
// throughput against consumers (one line per batch size), throughput against
// batch size (one line per consumer count), and latency percentiles.

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Chart geometry, in SVG user units.
const (
	svgWidth, svgHeight = 760, 440
	svgLeft, svgRight   = 80, 200 // the right margin holds the legend
	svgTop, svgBottom   = 50, 60
)

// svgPalette colours series by index; floor lines reuse their drain's colour.
var svgPalette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// svgSeries is one line of a line chart: a y value per x tick (NaN: none).
type svgSeries struct {
	name  string
	ys    []float64
	color string
	dash  string // stroke-dasharray, "" for solid
}

// svgLineChart is a line chart over categorical x ticks with a linear y
// axis from zero.
type svgLineChart struct {
	title, xLabel, yLabel string
	xTicks                []string
	series                []svgSeries
}

// svgBarChart is a grouped bar chart with a logarithmic y axis.
type svgBarChart struct {
	title, yLabel string
	groups        []string
	bars          []string    // bar names within a group, e.g. p50, p95, p99
	values        [][]float64 // values[group][bar]
}

// writeSVGs writes the charts the results allow into dir and returns
// the files written.
func writeSVGs(dir, backend string, rs []*Result) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	charts := map[string][]byte{}
	var drains []*Result
	for _, r := range rs {
		if r.Scenario == "drain" || r.Scenario == "floor" {
			drains = append(drains, r)
		}
	}
	if len(drains) > 0 {
		consumers := axisOf(drains, func(r *Result) int { return r.Consumers })
		batches := axisOf(drains, func(r *Result) int { return r.Batch })
		ch := svgLineChart{
			title:  backend + ": drain throughput by consumers (solid pgqrs, dashed raw-SQL floor)",
			xLabel: "consumers", yLabel: "msgs/s", xTicks: intLabels(consumers),
		}
		for i, batch := range batches {
			for _, scen := range []string{"drain", "floor"} {
				ch.series = append(ch.series, seriesOf(drains, scen, fmt.Sprintf("%s, batch %d", scen, batch), svgPalette[i%len(svgPalette)],
					consumers, func(r *Result) bool { return r.Batch == batch }, func(r *Result) int { return r.Consumers }))
			}
		}
		charts[backend+"-drain-consumers.svg"] = ch.render()

		bc := svgBarChart{title: backend + ": pgqrs drain, Dequeue latency by consumers × batch", yLabel: "ms (log scale)", bars: []string{"p50", "p95", "p99"}}
		for _, r := range drains {
			if r.Scenario == "drain" && r.DequeueMs != nil {
				bc.groups = append(bc.groups, fmt.Sprintf("%d×%d", r.Consumers, r.Batch))
				bc.values = append(bc.values, []float64{r.DequeueMs.P50, r.DequeueMs.P95, r.DequeueMs.P99})
			}
		}
		if len(bc.groups) > 0 {
			charts[backend+"-drain-latency.svg"] = bc.render()
		}
	}
	var runs []*Result
	for _, r := range rs {
		if r.Scenario == "drain-run" {
			runs = append(runs, r)
		}
	}
	if len(drains)+len(runs) > 0 {
		consumers := axisOf(drains, func(r *Result) int { return r.Consumers })
		batches := axisOf(append(slices.Clone(drains), runs...), func(r *Result) int { return r.Batch })
		ch := svgLineChart{
			title:  backend + ": drain throughput by batch size (solid pgqrs, dashed floor, dotted Run)",
			xLabel: "batch size", yLabel: "msgs/s", xTicks: intLabels(batches),
		}
		for i, cons := range consumers {
			for _, scen := range []string{"drain", "floor"} {
				ch.series = append(ch.series, seriesOf(drains, scen, fmt.Sprintf("%s, %d consumers", scen, cons), svgPalette[i%len(svgPalette)],
					batches, func(r *Result) bool { return r.Consumers == cons }, func(r *Result) int { return r.Batch }))
			}
		}
		for i, conc := range axisOf(runs, func(r *Result) int { return r.Concurrency }) {
			s := seriesOf(runs, "drain-run", fmt.Sprintf("Run, concurrency %d", conc), svgPalette[(len(consumers)+i)%len(svgPalette)],
				batches, func(r *Result) bool { return r.Concurrency == conc }, func(r *Result) int { return r.Batch })
			s.dash = "2 4"
			ch.series = append(ch.series, s)
		}
		charts[backend+"-drain-batch.svg"] = ch.render()
	}
	bc := svgBarChart{title: backend + ": enqueue → handler start, Consumer.Run", yLabel: "ms (log scale)", bars: []string{"p50", "p95", "p99"}}
	for _, r := range rs {
		if r.Scenario == "latency" && r.LatencyMs != nil {
			bc.groups = append(bc.groups, fmt.Sprintf("%s, %s/s", r.Mode, rate(r.TargetRate)))
			bc.values = append(bc.values, []float64{r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99})
		}
	}
	if len(bc.groups) > 0 {
		charts[backend+"-latency.svg"] = bc.render()
	}
	var files []string
	for name, data := range charts {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return files, err
		}
		files = append(files, path)
	}
	slices.Sort(files)
	return files, nil
}

// axisOf returns the sorted distinct values of key over rs.
func axisOf(rs []*Result, key func(*Result) int) []int {
	var out []int
	for _, r := range rs {
		if k := key(r); !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func intLabels(xs []int) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = strconv.Itoa(x)
	}
	return out
}

// seriesOf makes the series of scenario's rows matching keep, placed on
// the x axis by x.
func seriesOf(rs []*Result, scenario, name, color string, axis []int, keep func(*Result) bool, x func(*Result) int) svgSeries {
	s := svgSeries{name: name, color: color, ys: make([]float64, len(axis))}
	for i := range s.ys {
		s.ys[i] = math.NaN()
	}
	if scenario == "floor" {
		s.dash = "8 5"
	}
	for _, r := range rs {
		if r.Scenario == scenario && keep(r) {
			if i := slices.Index(axis, x(r)); i >= 0 {
				s.ys[i] = r.MsgsPerSec
			}
		}
	}
	return s
}

// svgWriter accumulates SVG markup.
type svgWriter struct{ bytes.Buffer }

func (w *svgWriter) printf(format string, args ...any) { fmt.Fprintf(&w.Buffer, format, args...) }

// text writes a text element with s escaped.
func (w *svgWriter) text(x, y float64, anchor, extra, s string) {
	var esc bytes.Buffer
	_ = xml.EscapeText(&esc, []byte(s))
	w.printf(`<text x="%.1f" y="%.1f" text-anchor="%s"%s>%s</text>`+"\n", x, y, anchor, extra, esc.String())
}

func (w *svgWriter) start(title string) {
	w.printf(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		svgWidth, svgHeight, svgWidth, svgHeight)
	w.printf(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	w.text(svgWidth/2, 24, "middle", ` font-size="14" font-weight="bold"`, title)
}

func (w *svgWriter) end() []byte {
	w.printf("</svg>\n")
	return w.Bytes()
}

// plot area corners
const (
	plotX0 = float64(svgLeft)
	plotX1 = float64(svgWidth - svgRight)
	plotY0 = float64(svgHeight - svgBottom) // bottom
	plotY1 = float64(svgTop)                // top
)

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func (c svgLineChart) render() []byte {
	var w svgWriter
	w.start(c.title)
	top := 0.0
	for _, s := range c.series {
		for _, y := range s.ys {
			if !math.IsNaN(y) {
				top = max(top, y)
			}
		}
	}
	top = niceCeil(top * 1.05)
	yPos := func(v float64) float64 { return plotY0 - (plotY0-plotY1)*v/top }
	n := len(c.xTicks)
	xPos := func(i int) float64 {
		if n == 1 {
			return (plotX0 + plotX1) / 2
		}
		return plotX0 + 30 + (plotX1-plotX0-60)*float64(i)/float64(n-1)
	}
	// Grid and y labels: five steps.
	for i := 0; i <= 5; i++ {
		v := top * float64(i) / 5
		y := yPos(v)
		w.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", plotX0, y, plotX1, y)
		w.text(plotX0-6, y+4, "end", "", rate(v))
	}
	w.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", plotX0, plotY0, plotX1, plotY0)
	w.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", plotX0, plotY0, plotX0, plotY1)
	for i, t := range c.xTicks {
		x := xPos(i)
		w.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", x, plotY0, x, plotY0+5)
		w.text(x, plotY0+18, "middle", "", t)
	}
	w.text((plotX0+plotX1)/2, plotY0+40, "middle", "", c.xLabel)
	w.text(18, (plotY0+plotY1)/2, "middle", fmt.Sprintf(` transform="rotate(-90 18 %.1f)"`, (plotY0+plotY1)/2), c.yLabel)
	for k, s := range c.series {
		var pts []string
		for i, y := range s.ys {
			if math.IsNaN(y) {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xPos(i), yPos(y)))
			w.printf(`<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/>`+"\n", xPos(i), yPos(y), s.color)
		}
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		if len(pts) > 1 {
			w.printf(`<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), s.color, dash)
		}
		ly := plotY1 + 10 + float64(k)*18
		w.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", plotX1+15, ly, plotX1+45, ly, s.color, dash)
		w.text(plotX1+50, ly+4, "start", "", s.name)
	}
	return w.end()
}

func (c svgBarChart) render() []byte {
	var w svgWriter
	w.start(c.title)
	lo, hi := math.Inf(1), 0.0
	for _, g := range c.values {
		for _, v := range g {
			if v > 0 {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
	}
	if hi == 0 {
		lo, hi = 1, 10
	}
	dLo, dHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
	if dHi <= dLo {
		dHi = dLo + 1
	}
	yPos := func(v float64) float64 {
		if v <= 0 {
			return plotY0
		}
		return plotY0 - (plotY0-plotY1)*(math.Log10(v)-dLo)/(dHi-dLo)
	}
	for d := dLo; d <= dHi; d++ {
		v := math.Pow(10, d)
		y := yPos(v)
		w.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", plotX0, y, plotX1, y)
		w.text(plotX0-6, y+4, "end", "", strconv.FormatFloat(v, 'g', -1, 64))
	}
	w.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", plotX0, plotY0, plotX1, plotY0)
	w.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="black"/>`+"\n", plotX0, plotY0, plotX0, plotY1)
	w.text(18, (plotY0+plotY1)/2, "middle", fmt.Sprintf(` transform="rotate(-90 18 %.1f)"`, (plotY0+plotY1)/2), c.yLabel)
	groupW := (plotX1 - plotX0) / float64(max(1, len(c.groups)))
	barW := groupW * 0.8 / float64(max(1, len(c.bars)))
	for g, name := range c.groups {
		gx := plotX0 + groupW*float64(g) + groupW*0.1
		for b, v := range c.values[g] {
			y := yPos(v)
			w.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s: %s ms</title></rect>`+"\n",
				gx+barW*float64(b), y, barW*0.9, plotY0-y, svgPalette[b%len(svgPalette)], xmlEscape(name), c.bars[b], ms(v))
		}
		w.text(gx+groupW*0.4, plotY0+18, "middle", "", name)
	}
	for b, name := range c.bars {
		ly := plotY1 + 10 + float64(b)*18
		w.printf(`<rect x="%.1f" y="%.1f" width="14" height="10" fill="%s"/>`+"\n", plotX1+15, ly-6, svgPalette[b%len(svgPalette)])
		w.text(plotX1+35, ly+4, "start", "", name)
	}
	return w.end()
}

func xmlEscape(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
