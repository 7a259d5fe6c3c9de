package ui

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// The loaders: what each page shows, which is also what its JSON twin
// under /api/ returns.

// queueRow is one queue of the overview. Its columns are listed once, in
// queueColumns, for the page and for the script that updates it.
type queueRow struct {
	Metrics    pgqrs.QueueMetrics      `json:"metrics"`
	Throughput []pgqrs.ThroughputPoint `json:"throughput"`
}

// queueColumn is one count column of the overview's queue table: the
// template renders the header and the cell, the script updates the cell
// from the JSON by its key. A new column (limits, say) is one entry here
// and, if it is not a metrics field, one field in queueRow.
type queueColumn struct {
	Key, Label, Title string
}

var queueColumns = []queueColumn{
	{"pending", "Pending", "visible + delayed: not held by a consumer"},
	{"visible", "Visible", "claimable now"},
	{"leased", "Leased", "held by a consumer"},
	{"delayed", "Delayed", "not visible yet"},
	{"dead", "Dead", "dead letters"},
	{"archived", "Archived", "processed and kept in the archive"},
}

func (q queueRow) Cell(key string) int64 {
	m := q.Metrics
	switch key {
	case "pending":
		return m.Pending
	case "visible":
		return m.Visible
	case "leased":
		return m.Leased
	case "delayed":
		return m.Delayed
	case "dead":
		return m.Dead
	case "archived":
		return m.Archived
	}
	return 0
}

type overviewData struct {
	Queues  []queueRow         `json:"queues"`
	System  pgqrs.SystemStats  `json:"system"`
	Workers pgqrs.WorkerHealth `json:"workers"`
	Minutes int                `json:"chart_minutes"`
}

func (s *server) overview(r *http.Request) (any, error) {
	ctx := r.Context()
	a := s.store.Admin()
	ms, err := a.AllQueueMetrics(ctx)
	if err != nil {
		return nil, err
	}
	d := overviewData{Queues: []queueRow{}, Minutes: chartMinutes}
	for _, m := range ms {
		tp, err := a.Throughput(ctx, m.Queue, chartMinutes)
		if err != nil {
			return nil, err
		}
		d.Queues = append(d.Queues, queueRow{Metrics: m, Throughput: tp})
	}
	if d.System, err = a.SystemStats(ctx); err != nil {
		return nil, err
	}
	if d.Workers, err = a.WorkerHealth(ctx, "", s.opts.StaleAfter); err != nil {
		return nil, err
	}
	return d, nil
}

// queueTabs are the queue page's message lists.
var queueTabs = []string{"all", "visible", "leased", "delayed", "dead", "archived"}

type queueData struct {
	Queue      *pgqrs.Queue             `json:"queue"`
	Metrics    pgqrs.QueueMetrics       `json:"metrics"`
	Throughput []pgqrs.ThroughputPoint  `json:"throughput"`
	Tab        string                   `json:"tab"`
	Live       []*pgqrs.LiveMessage     `json:"messages,omitempty"`
	Archived   []*pgqrs.ArchivedMessage `json:"archived,omitempty"`
	Next       int64                    `json:"next_before,omitempty"` // the before= of the next page; 0: none
	Workers    []workerRow              `json:"workers"`
	Tabs       []string                 `json:"-"`
}

func (s *server) queuePage(r *http.Request) (any, error) {
	name := r.URL.Query().Get("name")
	if name == "" {
		return nil, notFound("no queue named")
	}
	tab := cmpOr(r.URL.Query().Get("tab"), "all")
	if !slices.Contains(queueTabs, tab) {
		return nil, badRequest("unknown tab %q (want one of %s)", tab, strings.Join(queueTabs, ", "))
	}
	before, err := optionalID(r, "before")
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	a := s.store.Admin()
	q, err := a.GetQueue(ctx, name)
	if err != nil {
		return nil, err
	}
	d := queueData{Queue: q, Tab: tab, Tabs: queueTabs}
	if d.Metrics, err = a.QueueMetrics(ctx, name); err != nil {
		return nil, err
	}
	if d.Throughput, err = a.Throughput(ctx, name, chartMinutes); err != nil {
		return nil, err
	}
	switch tab {
	case "dead", "archived":
		page := pgqrs.ArchivePage{Limit: pageSize, BeforeID: before}
		if tab == "dead" {
			d.Archived, err = a.ListDeadLetters(ctx, name, page)
		} else {
			d.Archived, err = a.ListArchived(ctx, name, page)
		}
		if len(d.Archived) == pageSize {
			d.Next = d.Archived[pageSize-1].ID
		}
	default:
		state := pgqrs.MessageState(tab)
		if tab == "all" {
			state = ""
		}
		d.Live, err = a.ListMessages(ctx, name, pgqrs.MessagePage{State: state, Limit: pageSize, BeforeID: before})
		if len(d.Live) == pageSize {
			d.Next = d.Live[pageSize-1].ID
		}
	}
	if err != nil {
		return nil, err
	}
	if d.Workers, err = s.workers(r, name, false); err != nil {
		return nil, err
	}
	return d, nil
}

// apiMessages is the message list alone: /api/messages?queue=&state=.
func (s *server) apiMessages(r *http.Request) (any, error) {
	q := r.URL.Query()
	name := q.Get("queue")
	if name == "" {
		return nil, notFound("no queue named")
	}
	state := cmpOr(q.Get("state"), "all")
	before, err := optionalID(r, "before")
	if err != nil {
		return nil, err
	}
	limit := pageSize
	if l := q.Get("limit"); l != "" {
		if limit, err = strconv.Atoi(l); err != nil || limit < 1 {
			return nil, badRequest("bad limit %q", l)
		}
	}
	a := s.store.Admin()
	switch state {
	case "dead":
		return a.ListDeadLetters(r.Context(), name, pgqrs.ArchivePage{Limit: limit, BeforeID: before})
	case "archived":
		return a.ListArchived(r.Context(), name, pgqrs.ArchivePage{Limit: limit, BeforeID: before})
	case "all":
		state = ""
	}
	return a.ListMessages(r.Context(), name, pgqrs.MessagePage{State: pgqrs.MessageState(state), Limit: limit, BeforeID: before})
}

type workerRow struct {
	pgqrs.WorkerInfo
	Stale         bool    `json:"stale"`
	HeartbeatAgeS float64 `json:"heartbeat_age_seconds"`
	heartbeatAge  time.Duration
}

func (w workerRow) HeartbeatAge() time.Duration { return w.heartbeatAge }

// workers lists the workers of queue ("" for all); stopped ones only
// when all is set.
func (s *server) workers(r *http.Request, queue string, all bool) ([]workerRow, error) {
	ws, err := s.store.Admin().ListWorkers(r.Context(), queue)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	out := []workerRow{}
	for i := len(ws) - 1; i >= 0; i-- { // newest first
		w := ws[i]
		if w.Status == pgqrs.WorkerStopped && !all {
			continue
		}
		age := max(0, now.Sub(w.HeartbeatAt))
		live := w.Status == pgqrs.WorkerReady || w.Status == pgqrs.WorkerPolling || w.Status == pgqrs.WorkerInterrupted
		out = append(out, workerRow{WorkerInfo: w, Stale: live && age > s.opts.StaleAfter, HeartbeatAgeS: age.Seconds(), heartbeatAge: age})
		if len(out) == 500 {
			break
		}
	}
	return out, nil
}

type workersData struct {
	Health     pgqrs.WorkerHealth `json:"health"`
	Workers    []workerRow        `json:"workers"`
	All        bool               `json:"all"`
	StaleAfter float64            `json:"stale_after_seconds"`
}

func (s *server) workersPage(r *http.Request) (any, error) {
	all := r.URL.Query().Get("all") == "1"
	var d workersData
	var err error
	d.All, d.StaleAfter = all, s.opts.StaleAfter.Seconds()
	if d.Health, err = s.store.Admin().WorkerHealth(r.Context(), "", s.opts.StaleAfter); err != nil {
		return nil, err
	}
	if d.Workers, err = s.workers(r, "", all); err != nil {
		return nil, err
	}
	return d, nil
}

var runStatuses = []pgqrs.RunStatus{pgqrs.RunQueued, pgqrs.RunRunning, pgqrs.RunPaused, pgqrs.RunCancelling,
	pgqrs.RunCancelled, pgqrs.RunSucceeded, pgqrs.RunFailed}

type workflowsData struct {
	Workflows []pgqrs.WorkflowInfo `json:"workflows"`
	Workflow  string               `json:"workflow,omitempty"`
	Status    pgqrs.RunStatus      `json:"status,omitempty"`
	Runs      []pgqrs.RunInfo      `json:"runs"`
	Next      int64                `json:"next_before,omitempty"`
	Statuses  []pgqrs.RunStatus    `json:"-"`
}

func (s *server) workflowsPage(r *http.Request) (any, error) {
	q := r.URL.Query()
	d := workflowsData{Workflow: q.Get("workflow"), Status: pgqrs.RunStatus(strings.ToUpper(q.Get("status"))), Statuses: runStatuses}
	if d.Status != "" && !slices.Contains(runStatuses, d.Status) {
		return nil, badRequest("unknown run status %q", q.Get("status"))
	}
	before, err := optionalID(r, "before")
	if err != nil {
		return nil, err
	}
	if d.Workflows, err = s.store.Admin().ListWorkflows(r.Context()); err != nil {
		return nil, err
	}
	if d.Workflow != "" && !slices.ContainsFunc(d.Workflows, func(w pgqrs.WorkflowInfo) bool { return w.Name == d.Workflow }) {
		return nil, notFound("workflow %q not found", d.Workflow)
	}
	d.Runs, err = s.store.Runs().List(r.Context(), pgqrs.RunFilter{Workflow: d.Workflow, Status: d.Status, Before: before, Limit: pageSize})
	if err != nil {
		return nil, err
	}
	if len(d.Runs) == pageSize {
		d.Next = d.Runs[pageSize-1].ID
	}
	return d, nil
}

// stepRow is one step of a run's timeline.
type stepRow struct {
	pgqrs.StepInfo
	// Since is the time between the end of the step before (or the run's
	// start) and this step's record: the step's duration, waits and
	// retries included.
	Since time.Duration `json:"-"`
	// Offset and Width place the step's bar on the timeline, in percent.
	Offset float64 `json:"-"`
	Width  float64 `json:"-"`
}

type runData struct {
	Run      *pgqrs.RunInfo  `json:"run"`
	Mailbox  *pgqrs.Mailbox  `json:"mailbox"`
	Children []pgqrs.RunInfo `json:"children"`
	Timeline []stepRow       `json:"-"`
	Total    time.Duration   `json:"-"`
}

func (s *server) runPage(r *http.Request) (any, error) {
	id, err := requiredID(r, "id")
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	var d runData
	if d.Run, err = s.store.Runs().Get(ctx, id); err != nil {
		return nil, err
	}
	if d.Mailbox, err = s.store.Runs().Mailbox(ctx, id); err != nil {
		return nil, err
	}
	if d.Children, err = s.store.Runs().List(ctx, pgqrs.RunFilter{Parent: id, Limit: pageSize}); err != nil {
		return nil, err
	}
	d.Timeline, d.Total = timeline(d.Run)
	return d, nil
}

// timeline places the run's steps between its start and its end (or now).
func timeline(run *pgqrs.RunInfo) ([]stepRow, time.Duration) {
	start := run.StartedAt
	if start.IsZero() {
		start = run.CreatedAt
	}
	end := run.FinishedAt
	if end.IsZero() {
		end = time.Now()
	}
	for _, st := range run.Steps {
		if st.UpdatedAt.After(end) {
			end = st.UpdatedAt
		}
	}
	total := max(end.Sub(start), time.Millisecond)
	rows := make([]stepRow, 0, len(run.Steps))
	prev := start
	for _, st := range run.Steps {
		from := prev
		if st.UpdatedAt.Before(from) {
			from = st.UpdatedAt
		}
		row := stepRow{StepInfo: st, Since: st.UpdatedAt.Sub(from)}
		row.Offset = 100 * float64(from.Sub(start)) / float64(total)
		row.Width = max(0.5, 100*float64(row.Since)/float64(total))
		if row.Offset+row.Width > 100 {
			row.Width = max(0.5, 100-row.Offset)
		}
		rows = append(rows, row)
		if st.UpdatedAt.After(prev) {
			prev = st.UpdatedAt
		}
	}
	return rows, total
}

func (s *server) schedulesPage(r *http.Request) (any, error) {
	list, err := s.store.Schedules().List(r.Context())
	if err != nil {
		return nil, err
	}
	return map[string]any{"schedules": list}, nil
}

// optionalID reads a positive ID parameter; absent is 0.
func optionalID(r *http.Request, key string) (int64, error) {
	v := r.URL.Query().Get(key)
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, badRequest("bad %s %q: want a positive number", key, v)
	}
	return id, nil
}

// requiredID reads an ID parameter; a missing or malformed one is a 404:
// no such thing exists.
func requiredID(r *http.Request, key string) (int64, error) {
	v := r.URL.Query().Get(key)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, notFound("no %s %q", key, v)
	}
	return id, nil
}

// Cell is the queue's count for the column key, as on the overview.
func (d queueData) Cell(key string) int64 { return queueRow{Metrics: d.Metrics}.Cell(key) }
