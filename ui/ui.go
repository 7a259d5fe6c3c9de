// Package ui is the pgqrs dashboard: an http.Handler with pages for queues,
// workers, workflow runs and schedules, and the JSON API the pages use.
//
// Mount it under a path prefix of your own server, behind your own
// authentication:
//
//	mux.Handle("/admin/pgqrs/", ui.Handler(store, ui.Options{
//		Prefix:       "/admin/pgqrs",
//		AllowActions: true,
//		Authorize: func(r *http.Request, action string) error {
//			if !isAdmin(r) {
//				return errors.New("admins only")
//			}
//			return nil
//		},
//	}))
//
// The dashboard is read-only unless Options.AllowActions is set. Every
// action is a POST carrying the CSRF token of the browser's session cookie
// (double submit), and cross-origin POSTs are refused as well. Pages and
// JSON are built from the public pgqrs API only; nothing is fetched from
// outside (the assets are embedded), and no DSN or credential appears in
// any response. docs/ui.md documents the pages and the JSON API.
//
// `pgqrs ui` in the command-line tool serves this handler.
package ui

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

//go:embed assets
var assets embed.FS

// Options configures the dashboard. The zero value serves a read-only
// dashboard at the root of the server it is mounted on.
type Options struct {
	// Prefix is the path the handler is mounted under, such as
	// "/admin/pgqrs" (no trailing slash; "" for the root). The handler
	// accepts requests with the prefix still in the path and requests whose
	// prefix an http.StripPrefix removed, and builds its links with it.
	Prefix string

	// AllowActions enables the actions (pause, replay, purge, cancel,
	// stop, retry, run now, …). Without it the dashboard only reads, shows
	// no action buttons, and refuses every action with 403.
	AllowActions bool

	// Authorize, when set, is asked before every request: action is "view"
	// for pages and JSON reads, else the action's name (docs/ui.md lists
	// them, e.g. "queue.pause"). A non-nil error refuses the request with
	// 403 and the error's text.
	Authorize func(r *http.Request, action string) error

	// StaleAfter is how long a worker may go without a heartbeat before the
	// dashboard shows it stale and "reclaim" stops it. Default
	// pgqrs.DefaultReclaimAfter.
	StaleAfter time.Duration

	// Refresh is how often the pages poll for live updates. Default 2 s;
	// negative turns live updates off.
	Refresh time.Duration

	// Logger receives the errors behind 500 responses (which show no
	// detail). Default slog.Default().
	Logger *slog.Logger
}

// chartMinutes is how many minutes of throughput and latency the charts show.
const chartMinutes = 15

// pageSize is how many messages, runs or workers a page lists at most.
const pageSize = 50

type server struct {
	store  *pgqrs.Store
	opts   Options
	pages  map[string]*template.Template
	static http.Handler
	mux    *http.ServeMux
	log    *slog.Logger
}

// Handler returns the dashboard over store, to be mounted at opts.Prefix.
// It is safe for concurrent use. A nil store gives a handler that answers
// every request with 500 "no store".
func Handler(store *pgqrs.Store, opts Options) http.Handler {
	if store == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "pgqrs ui: no store", http.StatusInternalServerError)
		})
	}
	opts.Prefix = strings.TrimRight(opts.Prefix, "/")
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = pgqrs.DefaultReclaimAfter
	}
	if opts.Refresh == 0 {
		opts.Refresh = 2 * time.Second
	}
	s := &server{store: store, opts: opts, log: opts.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.pages = templates()
	static, err := fs.Sub(assets, "assets/static")
	if err != nil {
		panic(err)
	}
	s.static = http.StripPrefix("/static/", http.FileServerFS(static))
	s.routes()
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusForbidden, "cross-origin request refused")
	}))
	return cop.Handler(s)
}

func (s *server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.page("overview", s.overview))
	m.HandleFunc("GET /queue", s.page("queue", s.queuePage))
	m.HandleFunc("GET /workers", s.page("workers", s.workersPage))
	m.HandleFunc("GET /workflows", s.page("workflows", s.workflowsPage))
	m.HandleFunc("GET /run", s.page("run", s.runPage))
	m.HandleFunc("GET /schedules", s.page("schedules", s.schedulesPage))
	m.HandleFunc("POST /actions/{action}", s.formAction)
	m.Handle("GET /static/", s.static)

	m.HandleFunc("GET /api/csrf", s.apiCSRF)
	m.HandleFunc("GET /api/overview", s.api(s.overview))
	m.HandleFunc("GET /api/queue", s.api(s.queuePage))
	m.HandleFunc("GET /api/messages", s.api(s.apiMessages))
	m.HandleFunc("GET /api/workers", s.api(s.workersPage))
	m.HandleFunc("GET /api/workflows", s.api(s.workflowsPage))
	m.HandleFunc("GET /api/run", s.api(s.runPage))
	m.HandleFunc("GET /api/schedules", s.api(s.schedulesPage))
	m.HandleFunc("POST /api/actions/{action}", s.apiAction)
	m.HandleFunc("GET /metrics", s.metrics)
	m.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "no such endpoint")
	})
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, http.StatusNotFound, "no such page")
	})
	s.mux = m
}

// ServeHTTP strips the prefix, sets the security headers, refuses what
// Authorize refuses and turns a panic into a 500 without detail.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("pgqrs ui: panic", "path", r.URL.Path, "panic", fmt.Sprint(v))
			s.fail(w, r, http.StatusInternalServerError, "internal error")
		}
	}()
	if p := s.opts.Prefix; p != "" {
		if rest, ok := strings.CutPrefix(r.URL.Path, p); ok && (rest == "" || rest[0] == '/') {
			r2 := r.Clone(r.Context())
			r2.URL.Path = cmpOr(rest, "/")
			r2.URL.RawPath = ""
			r = r2
		}
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if s.opts.Authorize != nil && r.Method != http.MethodPost { // POSTs ask with their action's name
		if err := s.opts.Authorize(r, "view"); err != nil {
			s.fail(w, r, http.StatusForbidden, err.Error())
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// metrics serves the per-queue gauges in the Prometheus text format
// ([pgqrs.Admin.WritePrometheus]), for a scraper pointed at the dashboard.
// It is a view like the pages: Authorize is asked with "view".
func (s *server) metrics(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := s.store.Admin().WritePrometheus(r.Context(), &buf); err != nil {
		st, msg := s.classify(r, err)
		s.fail(w, r, st, msg)
		return
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(buf.Bytes())
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// --- errors -------------------------------------------------------------

// httpError is a failure with the status and the text to show.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// classify maps an error to its status and the text a user may see: the
// error of pgqrs for what the user asked wrongly, nothing for the rest.
func (s *server) classify(r *http.Request, err error) (int, string) {
	var he *httpError
	var te *pgqrs.TransitionError
	switch {
	case errors.As(err, &he):
		return he.status, he.msg
	case errors.Is(err, pgqrs.ErrQueueNotFound), errors.Is(err, pgqrs.ErrMessageNotFound),
		errors.Is(err, pgqrs.ErrWorkerNotFound), errors.Is(err, pgqrs.ErrWorkflowNotFound),
		errors.Is(err, pgqrs.ErrRunNotFound), errors.Is(err, pgqrs.ErrScheduleNotFound),
		errors.Is(err, pgqrs.ErrInvalidName):
		return http.StatusNotFound, trimPkg(err.Error())
	case errors.Is(err, pgqrs.ErrInvalidArgument), errors.Is(err, pgqrs.ErrBatchTooLarge):
		return http.StatusBadRequest, trimPkg(err.Error())
	case errors.As(err, &te), errors.Is(err, pgqrs.ErrRunFinished), errors.Is(err, pgqrs.ErrRunState),
		errors.Is(err, pgqrs.ErrQueueInUse), errors.Is(err, pgqrs.ErrMessageCancelled),
		errors.Is(err, pgqrs.ErrDuplicate):
		return http.StatusConflict, trimPkg(err.Error())
	case errors.Is(err, context.Canceled):
		return 499, "request cancelled"
	}
	s.log.Error("pgqrs ui: request failed", "path", r.URL.Path, "err", err)
	return http.StatusInternalServerError, "the database call failed (the server log has the detail)"
}

func trimPkg(msg string) string { return strings.ReplaceAll(msg, "pgqrs: ", "") }

// fail answers with an error page, or JSON under /api/.
func (s *server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if isAPI(r) {
		writeJSON(w, status, map[string]any{"error": msg, "status": status})
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_ = s.pages["error"].ExecuteTemplate(w, "layout", s.view(w, r, "error", map[string]any{
		"Status": status, "StatusText": http.StatusText(status), "Message": msg,
	}))
}

func isAPI(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/api/") }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// --- pages and API --------------------------------------------------------

// loader gathers what one page (or its JSON twin) shows.
type loader func(r *http.Request) (any, error)

func (s *server) page(name string, load loader) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := load(r)
		if err != nil {
			st, msg := s.classify(r, err)
			s.fail(w, r, st, msg)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := s.pages[name].ExecuteTemplate(w, "layout", s.view(w, r, name, data)); err != nil && r.Context().Err() == nil &&
			!errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) { // not a browser that went away
			s.log.Error("pgqrs ui: render", "page", name, "err", err)
		}
	}
}

func (s *server) api(load loader) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		data, err := load(r)
		if err != nil {
			st, msg := s.classify(r, err)
			s.fail(w, r, st, msg)
			return
		}
		writeJSON(w, http.StatusOK, data)
	}
}

// view is what the layout template gets.
type view struct {
	Page      string
	Prefix    string
	CSRF      string
	Actions   bool
	Refresh   int64 // milliseconds; 0: no live updates
	Backend   string
	Flash     string
	FlashErr  bool
	Back      string // this page's path and query, for the forms' return
	Data      any
	Generated time.Time
}

func (s *server) view(w http.ResponseWriter, r *http.Request, page string, data any) view {
	v := view{
		Page: page, Prefix: s.opts.Prefix, CSRF: s.csrfToken(w, r), Actions: s.opts.AllowActions,
		Backend: string(s.store.Dialect()), Data: data, Back: s.opts.Prefix + r.URL.Path,
		Generated: time.Now().UTC(),
	}
	if r.URL.RawQuery != "" {
		v.Back += "?" + r.URL.RawQuery
	}
	if s.opts.Refresh > 0 {
		v.Refresh = s.opts.Refresh.Milliseconds()
	}
	if c, err := r.Cookie(flashCookie); err == nil {
		if msg, err := url.QueryUnescape(c.Value); err == nil {
			v.Flash, v.FlashErr = msg, strings.HasPrefix(msg, "!")
			if v.FlashErr {
				v.Flash = msg[1:]
			}
		}
		http.SetCookie(w, &http.Cookie{Name: flashCookie, Path: s.cookiePath(), MaxAge: -1})
	}
	return v
}

// --- CSRF -----------------------------------------------------------------

const (
	csrfCookie  = "pgqrs_csrf"
	flashCookie = "pgqrs_flash"
)

func (s *server) cookiePath() string { return s.opts.Prefix + "/" }

// csrfToken returns the session's token, setting the cookie when the
// browser has none.
func (s *server) csrfToken(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(csrfCookie); err == nil && len(c.Value) >= 32 {
		return c.Value
	}
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	tok := base64.RawURLEncoding.EncodeToString(b)
	http.SetCookie(w, &http.Cookie{
		Name: csrfCookie, Value: tok, Path: s.cookiePath(), HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	// Later reads in this request (the page's forms) see the new token.
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: tok})
	return tok
}

// checkCSRF requires the token of the session cookie in the form field
// "csrf" or the X-CSRF-Token header.
func checkCSRF(r *http.Request) error {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 32 {
		return errors.New("missing CSRF cookie: load a page (or GET api/csrf) first")
	}
	got := r.Header.Get("X-CSRF-Token")
	if got == "" {
		got = r.PostFormValue("csrf")
	}
	if subtle.ConstantTimeCompare([]byte(got), []byte(c.Value)) != 1 {
		return errors.New("bad or missing CSRF token")
	}
	return nil
}

func (s *server) apiCSRF(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"token": s.csrfToken(w, r), "actions": s.opts.AllowActions})
}
