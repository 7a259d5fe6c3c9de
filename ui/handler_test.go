package ui_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/ui"
)

const prefix = "/admin/pgqrs"

// client is a browser-like HTTP client of one dashboard: it keeps cookies
// and does not follow redirects.
type client struct {
	t    *testing.T
	base string
	c    *http.Client
	dsn  string // must appear in no response
}

func newClient(t *testing.T, h http.Handler, dsn string) *client {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(prefix+"/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	return &client{t: t, base: srv.URL + prefix, dsn: dsn, c: &http.Client{
		Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (c *client) do(req *http.Request) (int, string, http.Header) {
	c.t.Helper()
	res, err := c.c.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	body := string(b)
	c.checkSafe(req.Method+" "+req.URL.String(), body)
	return res.StatusCode, body, res.Header
}

// checkSafe fails the test when a response shows the DSN, a stack trace
// or one of the hostile strings unescaped (JSON escapes < and > as \u003c,
// HTML as &lt;).
func (c *client) checkSafe(what, body string) {
	c.t.Helper()
	for _, bad := range []string{"<script>alert", "<img src=x", "onerror=alert(1)>", "goroutine ", ".go:", "runtime/panic"} {
		if strings.Contains(body, bad) {
			c.t.Errorf("%s: response contains %q", what, bad)
		}
	}
	if u, err := url.Parse(strings.TrimPrefix(c.dsn, "sqlite:")); err == nil && u.Host != "" && strings.Contains(body, u.Host) {
		c.t.Errorf("%s: response contains the database address %q", what, u.Host)
	}
	if path := strings.TrimPrefix(c.dsn, "sqlite:"); strings.HasPrefix(c.dsn, "sqlite:") && strings.Contains(body, path) {
		c.t.Errorf("%s: response contains the database file %q", what, path)
	}
}

func (c *client) get(path string) (int, string, http.Header) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
	return c.do(req)
}

// page GETs an HTML page and wants status.
func (c *client) page(path string, status int, want ...string) string {
	c.t.Helper()
	st, body, h := c.get(path)
	if st != status {
		c.t.Fatalf("GET %s: status %d, want %d\n%s", path, st, status, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		c.t.Errorf("GET %s: content type %q", path, ct)
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
		c.t.Errorf("GET %s: CSP %q", path, csp)
	}
	for _, w := range want {
		if !strings.Contains(body, w) {
			c.t.Errorf("GET %s: page lacks %q", path, w)
		}
	}
	return body
}

// api GETs JSON into v and wants status.
func (c *client) api(path string, status int, v any) {
	c.t.Helper()
	st, body, h := c.get(path)
	if st != status {
		c.t.Fatalf("GET %s: status %d, want %d\n%s", path, st, status, body)
	}
	if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		c.t.Errorf("GET %s: content type %q", path, ct)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			c.t.Fatalf("GET %s: %v\n%s", path, err, body)
		}
	}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// token returns the session's CSRF token, as the pages embed it.
func (c *client) token() string {
	c.t.Helper()
	var v struct{ Token string }
	c.api("/api/csrf", 200, &v)
	if len(v.Token) < 32 {
		c.t.Fatalf("token %q", v.Token)
	}
	return v.Token
}

// form POSTs an HTML form (the token goes in the form unless empty).
func (c *client) form(action string, vals url.Values, token string) (int, string, http.Header) {
	c.t.Helper()
	if token != "" {
		vals.Set("csrf", token)
	}
	req, _ := http.NewRequest(http.MethodPost, c.base+"/actions/"+action, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.do(req)
}

// action POSTs to the JSON API with the token header and wants status.
func (c *client) action(name string, vals url.Values, token string, status int) map[string]any {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, c.base+"/api/actions/"+name, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if token != "" {
		req.Header.Set("X-CSRF-Token", token)
	}
	st, body, _ := c.do(req)
	if st != status {
		c.t.Fatalf("POST api/actions/%s %v: status %d, want %d\n%s", name, vals, st, status, body)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		c.t.Fatalf("POST api/actions/%s: %v\n%s", name, err, body)
	}
	return v
}

func forEachBackend(t *testing.T, f func(t *testing.T, s *pgqrs.Store, dsn string)) {
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			s, dsn := openStore(t, b)
			f(t, s, dsn)
		})
	}
}

func vals(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Set(kv[i], kv[i+1])
	}
	return v
}

func TestPagesAndAPI(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *pgqrs.Store, dsn string) {
		d := seed(t, s)
		c := newClient(t, ui.Handler(s, ui.Options{Prefix: prefix}), dsn)

		// Every page, with what it must show; escaped hostile strings prove
		// the data is there and inert.
		c.page("/", 200, "emails", "payments", "reports", `data-queue="emails"`, "<svg", "read-only")
		body := c.page("/queue?name=emails", 200, "mailer-2", "&lt;script&gt;alert(1)&lt;/script&gt;", "x-evil")
		if strings.Contains(body, `class="act"`) {
			t.Errorf("read-only queue page has action forms")
		}
		for _, tab := range []string{"all", "visible", "leased", "delayed", "archived"} {
			c.page("/queue?name=emails&tab="+tab, 200, "Queue")
		}
		c.page("/queue?name=emails&tab=dead", 200, "&lt;img src=x onerror=alert(2)&gt; charge declined", fmt.Sprint(d.dead[0]))
		c.page("/queue?name=emails&tab=leased", 200, fmt.Sprintf(`data-id="%d"`, d.leased))
		c.page("/workers", 200, "mailer-2", "api-1", "polling")
		c.page("/workers?all=1", 200, "mailer-1", "stopped")
		c.page("/workflows", 200, "order", "notify", "report", fmt.Sprintf("#%d", d.okRun))
		c.page("/workflows?workflow=order&status=error", 200, fmt.Sprintf("#%d", d.failedRun))
		c.page(fmt.Sprintf("/run?id=%d", d.okRun), 200, "reserve", "charge", "await-notify", "approval", "receipt",
			fmt.Sprintf("run?id=%d", d.childRun), "approve")
		c.page(fmt.Sprintf("/run?id=%d", d.failedRun), 200, "charge declined", "error")
		c.page(fmt.Sprintf("/run?id=%d", d.childRun), 200, fmt.Sprintf("run #%d", d.okRun), "send")
		c.page("/schedules", 200, "nightly-digest", "every-5m", "Europe/Berlin", "0 3 * * *", "paused")
		_, css, _ := c.get("/static/app.css")
		_, js, _ := c.get("/static/app.js")
		if !strings.Contains(css, "--accent") || !strings.Contains(js, "swapRegions") {
			t.Errorf("static assets missing: css %d bytes, js %d bytes", len(css), len(js))
		}

		// Unknown things and bad IDs: a 404 page, never a stack trace.
		for _, path := range []string{"/queue?name=nope", "/queue?name=", "/queue?name=%3Cscript%3E", "/run?id=abc", "/run?id=-1",
			"/run?id=99999999", "/workflows?workflow=nope", "/nope", "/static/nope.js"} {
			st, body, _ := c.get(path)
			if st != 404 {
				t.Errorf("GET %s: status %d, want 404", path, st)
			}
			if path != "/static/nope.js" && !strings.Contains(body, "404") {
				t.Errorf("GET %s: no 404 page:\n%s", path, body)
			}
		}
		for _, path := range []string{"/queue?name=emails&tab=bogus", "/queue?name=emails&before=x", "/workflows?status=bogus"} {
			if st, _, _ := c.get(path); st != 400 {
				t.Errorf("GET %s: status %d, want 400", path, st)
			}
		}

		// The JSON API.
		var ov struct {
			Queues []struct {
				Metrics    map[string]any   `json:"metrics"`
				Throughput []map[string]any `json:"throughput"`
			} `json:"queues"`
			System  map[string]any `json:"system"`
			Workers map[string]any `json:"workers"`
		}
		c.api("/api/overview", 200, &ov)
		// The same counts for a Prometheus scraper.
		if st, body, h := c.get("/metrics"); st != 200 || !strings.HasPrefix(h.Get("Content-Type"), "text/plain; version=0.0.4") ||
			!strings.Contains(body, `pgqrs_queue_messages{queue="emails",state="dead"} 2`) {
			t.Errorf("GET /metrics: status %d, type %q:\n%s", st, h.Get("Content-Type"), body)
		}
		if len(ov.Queues) < 3 || ov.System["queues"] == nil || ov.Workers["polling"] == nil {
			t.Errorf("overview = %+v", ov)
		}
		byName := map[string]map[string]any{}
		for _, q := range ov.Queues {
			byName[q.Metrics["queue"].(string)] = q.Metrics
			if len(q.Throughput) != 15 {
				t.Errorf("queue %v: %d throughput points, want 15", q.Metrics["queue"], len(q.Throughput))
			}
		}
		if e := byName["emails"]; e["dead"] != 2.0 || e["leased"] != 1.0 || e["visible"] != 2.0 || e["delayed"] != 1.0 || e["archived"] != 2.0 {
			t.Errorf("emails metrics = %v", e)
		}
		var emails map[string]any
		var processed float64
		c.api("/api/queue?name=emails", 200, &emails)
		for _, p := range emails["throughput"].([]any) {
			processed += p.(map[string]any)["archived"].(float64)
		}
		if processed != 2 {
			t.Errorf("emails processed in the last minutes = %v, want 2", processed)
		}
		var msgs []map[string]any
		c.api("/api/messages?queue=emails&state=visible", 200, &msgs)
		if len(msgs) != 2 || msgs[0]["payload"] == nil || msgs[0]["headers"].(map[string]any)["x-evil"] != xssImg {
			t.Errorf("visible messages = %v", msgs)
		}
		c.api("/api/messages?queue=emails&state=dead", 200, &msgs)
		if len(msgs) != 2 || msgs[0]["last_error"] != xssErr {
			t.Errorf("dead letters = %v", msgs)
		}
		c.api("/api/messages?queue=emails&state=archived&limit=1", 200, &msgs)
		if len(msgs) != 1 {
			t.Errorf("archived, limit 1 = %v", msgs)
		}
		var workers struct {
			Workers []map[string]any `json:"workers"`
			Health  map[string]any   `json:"health"`
		}
		c.api("/api/workers?all=1", 200, &workers)
		if len(workers.Workers) < 5 || workers.Health["stopped"] == nil {
			t.Errorf("workers = %+v", workers)
		}
		var wfs struct {
			Workflows []map[string]any `json:"workflows"`
			Runs      []map[string]any `json:"runs"`
		}
		c.api("/api/workflows?workflow=order", 200, &wfs)
		if len(wfs.Workflows) != 3 || len(wfs.Runs) != 3 {
			t.Errorf("workflows = %+v", wfs)
		}
		var run struct {
			Run      pgqrs.RunInfo   `json:"run"`
			Mailbox  pgqrs.Mailbox   `json:"mailbox"`
			Children []pgqrs.RunInfo `json:"children"`
		}
		c.api(fmt.Sprintf("/api/run?id=%d", d.okRun), 200, &run)
		if run.Run.Status != pgqrs.RunSucceeded || len(run.Run.Steps) < 5 || len(run.Children) != 1 ||
			len(run.Mailbox.Signals) != 1 || len(run.Mailbox.Events) != 1 {
			t.Errorf("run = %+v", run)
		}
		var scheds struct {
			Schedules []pgqrs.ScheduleInfo `json:"schedules"`
		}
		c.api("/api/schedules", 200, &scheds)
		if len(scheds.Schedules) != 2 {
			t.Errorf("schedules = %+v", scheds)
		}
		var apiErr map[string]any
		for _, path := range []string{"/api/queue?name=nope", "/api/run?id=x", "/api/run?id=99999999", "/api/messages?queue=nope", "/api/nope"} {
			c.api(path, 404, &apiErr)
			if apiErr["error"] == "" || apiErr["status"] != 404.0 {
				t.Errorf("GET %s: %v", path, apiErr)
			}
		}
		c.api("/api/messages?queue=emails&state=bogus", 400, &apiErr)

		// Read-only: a valid token changes nothing.
		tok := c.token()
		res := c.action("queue.pause", vals("queue", "emails"), tok, http.StatusForbidden)
		if !strings.Contains(fmt.Sprint(res["error"]), "read-only") {
			t.Errorf("read-only refusal = %v", res)
		}
		if st, _, _ := c.form("dead.replay", vals("queue", "emails", "id", fmt.Sprint(d.dead[0])), tok); st != http.StatusForbidden {
			t.Errorf("read-only form: status %d, want 403", st)
		}
		if m, err := s.Admin().QueueMetrics(t.Context(), "emails"); err != nil || m.Paused || m.Dead != 2 {
			t.Errorf("a read-only dashboard changed emails: %+v, %v", m, err)
		}
	})
}

func TestActions(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *pgqrs.Store, dsn string) {
		ctx := t.Context()
		a := s.Admin()
		d := seed(t, s)
		var mu sync.Mutex
		var asked []string
		h := ui.Handler(s, ui.Options{Prefix: prefix, AllowActions: true, StaleAfter: time.Millisecond,
			Authorize: func(r *http.Request, action string) error {
				mu.Lock()
				defer mu.Unlock()
				asked = append(asked, action)
				if action == "queue.purge" && r.FormValue("confirm") == "payments" {
					return errors.New("purging payments is not allowed here")
				}
				return nil
			}})
		c := newClient(t, h, dsn)
		body := c.page("/queue?name=emails", 200, `class="act"`, "actions on")
		m := csrfField.FindStringSubmatch(body)
		if m == nil {
			t.Fatal("no CSRF field in the queue page's forms")
		}
		tok := m[1]
		metrics := func(q string) pgqrs.QueueMetrics {
			mm, err := a.QueueMetrics(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			return mm
		}

		// Refusals first: nothing may change.
		for _, tc := range []struct {
			what  string
			token string
			hdr   map[string]string
		}{
			{"no token", "", nil},
			{"wrong token", strings.Repeat("A", 43), nil},
			{"cross-site", tok, map[string]string{"Sec-Fetch-Site": "cross-site"}},
			{"foreign origin", tok, map[string]string{"Origin": "https://evil.example"}},
		} {
			v := vals("queue", "reports", "back", prefix+"/")
			if tc.token != "" {
				v.Set("csrf", tc.token)
			}
			req, _ := http.NewRequest(http.MethodPost, c.base+"/actions/queue.pause", strings.NewReader(v.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			for k, val := range tc.hdr {
				req.Header.Set(k, val)
			}
			if st, _, _ := c.do(req); st != http.StatusForbidden {
				t.Errorf("%s: status %d, want 403", tc.what, st)
			}
			if tc.hdr == nil {
				c.action("queue.pause", vals("queue", "reports"), tc.token, http.StatusForbidden)
			}
		}
		if st, _, _ := c.get("/actions/queue.pause?queue=reports"); st != http.StatusNotFound {
			t.Errorf("GET of an action: status %d, want 404", st)
		}
		if metrics("reports").Paused {
			t.Fatal("a refused request paused the queue")
		}

		// The form: 303 back to the page, with the outcome shown once.
		st, _, hdr := c.form("queue.pause", vals("queue", "reports", "back", prefix+"/queue?name=reports"), tok)
		if st != http.StatusSeeOther || hdr.Get("Location") != prefix+"/queue?name=reports" {
			t.Fatalf("form pause: %d to %q", st, hdr.Get("Location"))
		}
		if !metrics("reports").Paused {
			t.Fatal("pause did not pause")
		}
		c.page("/queue?name=reports", 200, "Paused queue reports.", "Resume queue")
		if strings.Contains(c.page("/queue?name=reports", 200), "Paused queue reports.") {
			t.Error("the outcome was shown twice")
		}
		// A foreign return address is not followed.
		if _, _, hdr := c.form("queue.resume", vals("queue", "reports", "back", "https://evil.example/"), tok); hdr.Get("Location") != prefix+"/" {
			t.Errorf("back to a foreign site: Location %q", hdr.Get("Location"))
		}
		if metrics("reports").Paused {
			t.Fatal("resume did not resume")
		}
		// An action that fails shows why, on the page it came from.
		c.form("message.cancel", vals("queue", "emails", "id", "99999999", "back", prefix+"/queue?name=emails"), tok)
		c.page("/queue?name=emails", 200, "message not found")

		// Every action through the API, each checked in the database.
		c.action("queue.pause", vals("queue", "reports"), tok, 200)
		if !metrics("reports").Paused {
			t.Error("api pause did not pause")
		}
		c.action("queue.resume", vals("queue", "reports"), tok, 200)
		if metrics("reports").Paused {
			t.Error("api resume did not resume")
		}
		c.action("message.cancel", vals("queue", "emails", "id", fmt.Sprint(d.visible[0])), tok, 200)
		if am, err := a.GetArchived(ctx, "emails", d.visible[0]); err != nil || !am.Cancelled {
			t.Errorf("cancelled message = %+v, %v", am, err)
		}
		c.action("message.cancel", vals("queue", "emails", "id", "x"), tok, 404)
		c.action("dead.replay", vals("queue", "emails", "id", fmt.Sprint(d.dead[0])), tok, 200)
		if mm := metrics("emails"); mm.Dead != 1 {
			t.Errorf("after replaying one: %d dead", mm.Dead)
		}
		c.action("dead.replay", vals("queue", "emails", "id", fmt.Sprint(d.dead[0])), tok, 404) // no longer dead
		c.action("dead.purge", vals("queue", "emails"), tok, 200)
		if mm := metrics("emails"); mm.Dead != 0 {
			t.Errorf("after purge: %d dead", mm.Dead)
		}
		res := c.action("dead.replay-all", vals("queue", "emails"), tok, 200)
		if res["result"].(map[string]any)["replayed"] != 0.0 {
			t.Errorf("replay-all of none = %v", res)
		}
		c.action("queue.purge", vals("queue", "reports"), tok, 400) // no confirmation
		c.action("queue.purge", vals("queue", "payments", "confirm", "payments"), tok, 403)
		if mm := metrics("payments"); mm.Pending != int64(d.drainCount) {
			t.Errorf("a refused purge changed payments: %+v", mm)
		}
		c.action("queue.purge", vals("queue", "emails", "confirm", "emails"), tok, 200)
		if mm := metrics("emails"); mm.Pending+mm.Leased+mm.Archived+mm.Dead != 0 {
			t.Errorf("after purge: %+v", mm)
		}
		c.action("worker.stop", vals("id", fmt.Sprint(d.consumer)), tok, 200)
		if w, err := a.GetWorker(ctx, d.consumer); err != nil || w.Status != pgqrs.WorkerStopped {
			t.Errorf("stopped worker = %+v, %v", w, err)
		}
		c.action("worker.stop", vals("id", "99999999"), tok, 404)
		res = c.action("workers.reclaim", nil, tok, 200)
		if res["result"].(map[string]any)["workers"].(float64) < 1 {
			t.Errorf("reclaim with a stale age of 1ms stopped nobody: %v", res)
		}
		c.action("run.cancel", vals("id", fmt.Sprint(d.queuedRun)), tok, 200)
		c.action("run.resume", vals("id", fmt.Sprint(d.pausedRun)), tok, 200)
		c.action("run.retry", vals("id", fmt.Sprint(d.failedRun)), tok, 200)
		c.action("run.retry", vals("id", fmt.Sprint(d.okRun)), tok, 409) // it succeeded
		c.action("run.cancel", vals("id", "99999999"), tok, 404)
		for id, not := range map[int64]pgqrs.RunStatus{d.queuedRun: pgqrs.RunQueued, d.pausedRun: pgqrs.RunPaused, d.failedRun: pgqrs.RunFailed} {
			if r, err := s.Runs().Get(ctx, id); err != nil || r.Status == not {
				t.Errorf("run %d still %s (%v)", id, not, err)
			}
		}
		c.action("schedule.pause", vals("name", "nightly-digest"), tok, 200)
		if sc, err := s.Schedules().Get(ctx, "nightly-digest"); err != nil || !sc.Paused {
			t.Errorf("paused schedule = %+v, %v", sc, err)
		}
		c.action("schedule.resume", vals("name", "nightly-digest"), tok, 200)
		if sc, err := s.Schedules().Get(ctx, "nightly-digest"); err != nil || sc.Paused {
			t.Errorf("resumed schedule = %+v, %v", sc, err)
		}
		before := metrics("reports").Pending
		c.action("schedule.trigger", vals("name", "nightly-digest"), tok, 200)
		if after := metrics("reports").Pending; after != before+1 {
			t.Errorf("run now: reports has %d pending, want %d", after, before+1)
		}
		c.action("schedule.pause", vals("name", "nope"), tok, 404)
		c.action("nope", nil, tok, 404)

		mu.Lock()
		defer mu.Unlock()
		for _, want := range []string{"view", "queue.pause", "queue.purge", "worker.stop", "workers.reclaim", "run.retry", "schedule.trigger"} {
			if !slices.Contains(asked, want) {
				t.Errorf("Authorize was not asked about %q (asked: %v)", want, asked)
			}
		}
	})
}

func TestReadOnlyAndAuthorize(t *testing.T) {
	t.Parallel()
	s, dsn := openStore(t, "sqlite")
	if _, err := s.Admin().CreateQueue(t.Context(), "q"); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, ui.Handler(s, ui.Options{Prefix: prefix}), dsn)
	body := c.page("/", 200, "read-only")
	if strings.Contains(body, "/actions/") {
		t.Error("the read-only overview links to actions")
	}
	tok := c.token()
	if st, _, _ := c.form("queue.pause", vals("queue", "q"), tok); st != http.StatusForbidden {
		t.Errorf("read-only form action: status %d, want 403", st)
	}
	res := c.action("queue.pause", vals("queue", "q"), tok, http.StatusForbidden)
	if !strings.Contains(fmt.Sprint(res["error"]), "read-only") {
		t.Errorf("refusal = %v", res)
	}
	if m, _ := s.Admin().QueueMetrics(t.Context(), "q"); m.Paused {
		t.Error("a read-only dashboard paused the queue")
	}

	denied := newClient(t, ui.Handler(s, ui.Options{Prefix: prefix, Authorize: func(*http.Request, string) error {
		return errors.New("ask <b>an admin</b>")
	}}), dsn)
	body = denied.page("/", http.StatusForbidden, "ask &lt;b&gt;an admin&lt;/b&gt;")
	if strings.Contains(body, "q</a>") {
		t.Error("a refused viewer saw the queues")
	}
	var e map[string]any
	denied.api("/api/overview", http.StatusForbidden, &e)
	if st, _, _ := denied.get("/metrics"); st != http.StatusForbidden {
		t.Errorf("GET /metrics past a refusing Authorize: status %d, want 403", st)
	}
	head, _ := http.NewRequest(http.MethodHead, denied.base+"/", nil)
	if st, _, _ := denied.do(head); st != http.StatusForbidden {
		t.Errorf("HEAD past a refusing Authorize: status %d, want 403", st)
	}

	rec := httptest.NewRecorder()
	ui.Handler(nil, ui.Options{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("a handler without a store: status %d", rec.Code)
	}

	// Mounted at the root, and behind http.StripPrefix.
	root := httptest.NewServer(ui.Handler(s, ui.Options{}))
	defer root.Close()
	stripped := httptest.NewServer(http.StripPrefix("/x", ui.Handler(s, ui.Options{Prefix: "/x"})))
	defer stripped.Close()
	for _, u := range []string{root.URL + "/", stripped.URL + "/x/", stripped.URL + "/x/queue?name=q"} {
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(b), "q") {
			t.Errorf("GET %s: %d", u, res.StatusCode)
		}
		if strings.Contains(u, "/x/") && !strings.Contains(string(b), `href="/x/static/app.css"`) {
			t.Errorf("GET %s: links are not under the prefix", u)
		}
	}
}
