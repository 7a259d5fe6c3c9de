package ui

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// An action changes the store. Each takes its parameters from the POST's
// form (or the query string) and returns a one-line summary.
type action func(s *server, r *http.Request) (string, any, error)

// actions by name; docs/ui.md lists them with their parameters.
var actions = map[string]action{
	"queue.pause": func(s *server, r *http.Request) (string, any, error) {
		q := param(r, "queue")
		return "Paused queue " + q + ".", nil, s.store.Admin().PauseQueue(r.Context(), q)
	},
	"queue.resume": func(s *server, r *http.Request) (string, any, error) {
		q := param(r, "queue")
		return "Resumed queue " + q + ".", nil, s.store.Admin().ResumeQueue(r.Context(), q)
	},
	"queue.purge": func(s *server, r *http.Request) (string, any, error) {
		q := param(r, "queue")
		if param(r, "confirm") != q {
			return "", nil, badRequest("to purge queue %q, type its name in the confirmation field", q)
		}
		n, err := s.store.Admin().PurgeQueue(r.Context(), q)
		return fmt.Sprintf("Purged %d messages of queue %s.", n, q), map[string]int64{"purged": n}, err
	},
	"message.cancel": func(s *server, r *http.Request) (string, any, error) {
		q := param(r, "queue")
		id, err := formID(r, "id")
		if err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("Cancelled message %d.", id), nil, s.store.Admin().CancelMessage(r.Context(), q, id)
	},
	"dead.replay": func(s *server, r *http.Request) (string, any, error) {
		q := param(r, "queue")
		id, err := formID(r, "id")
		if err != nil {
			return "", nil, err
		}
		n, err := s.store.Admin().ReplayDeadLetters(r.Context(), q, []int64{id})
		if err == nil && n == 0 {
			err = notFound("queue %q has no dead letter %d (or its key is taken by a live message)", q, id)
		}
		return fmt.Sprintf("Replayed dead letter %d.", id), map[string]int64{"replayed": n}, err
	},
	"dead.replay-all": func(s *server, r *http.Request) (string, any, error) {
		q := param(r, "queue")
		n, err := s.store.Admin().ReplayAllDeadLetters(r.Context(), q)
		return fmt.Sprintf("Replayed %d dead letters of queue %s.", n, q), map[string]int64{"replayed": n}, err
	},
	"dead.purge": func(s *server, r *http.Request) (string, any, error) {
		q := param(r, "queue")
		n, err := s.store.Admin().PurgeDeadLetters(r.Context(), q)
		return fmt.Sprintf("Purged %d dead letters of queue %s.", n, q), map[string]int64{"purged": n}, err
	},
	"worker.stop": func(s *server, r *http.Request) (string, any, error) {
		id, err := formID(r, "id")
		if err != nil {
			return "", nil, err
		}
		n, err := s.store.Admin().StopWorker(r.Context(), id)
		return fmt.Sprintf("Stopped worker %d (%d messages released).", id, n), map[string]int64{"released": n}, err
	},
	"workers.reclaim": func(s *server, r *http.Request) (string, any, error) {
		w, m, err := s.store.Admin().ReclaimStale(r.Context(), s.opts.StaleAfter)
		return fmt.Sprintf("Stopped %d stale workers, released %d messages.", w, m), map[string]int64{"workers": w, "messages": m}, err
	},
	"run.cancel": func(s *server, r *http.Request) (string, any, error) {
		id, err := formID(r, "id")
		if err != nil {
			return "", nil, err
		}
		st, err := s.store.Runs().Cancel(r.Context(), id)
		return fmt.Sprintf("Run %d: %s.", id, strings.ToLower(string(st))), map[string]any{"status": st}, err
	},
	"run.resume": func(s *server, r *http.Request) (string, any, error) {
		id, err := formID(r, "id")
		if err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("Resumed run %d.", id), nil, s.store.Runs().Resume(r.Context(), id)
	},
	"run.retry": func(s *server, r *http.Request) (string, any, error) {
		id, err := formID(r, "id")
		if err != nil {
			return "", nil, err
		}
		return fmt.Sprintf("Retrying run %d.", id), nil, s.store.Runs().Retry(r.Context(), id)
	},
	"schedule.pause": func(s *server, r *http.Request) (string, any, error) {
		n := param(r, "name")
		return "Paused schedule " + n + ".", nil, s.store.Schedules().Pause(r.Context(), n)
	},
	"schedule.resume": func(s *server, r *http.Request) (string, any, error) {
		n := param(r, "name")
		return "Resumed schedule " + n + ".", nil, s.store.Schedules().Resume(r.Context(), n)
	},
	"schedule.trigger": func(s *server, r *http.Request) (string, any, error) {
		n := param(r, "name")
		id, err := s.store.Schedules().Trigger(r.Context(), n)
		return fmt.Sprintf("Schedule %s ran now (message %d).", n, id), map[string]int64{"message": id}, err
	},
}

func param(r *http.Request, key string) string { return strings.TrimSpace(r.FormValue(key)) }

func formID(r *http.Request, key string) (int64, error) {
	v := param(r, key)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id <= 0 {
		return 0, notFound("no %s %q", key, v)
	}
	return id, nil
}

// runAction checks and runs the action of the request: known, enabled,
// CSRF token, Authorize.
func (s *server) runAction(r *http.Request) (string, any, error) {
	name := r.PathValue("action")
	act, ok := actions[name]
	if !ok {
		return "", nil, notFound("no action %q", name)
	}
	if !s.opts.AllowActions {
		return "", nil, &httpError{http.StatusForbidden, "the dashboard is read-only: actions are disabled (Options.AllowActions, pgqrs ui --allow-actions)"}
	}
	r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
	if err := checkCSRF(r); err != nil {
		return "", nil, &httpError{http.StatusForbidden, err.Error()}
	}
	if s.opts.Authorize != nil {
		if err := s.opts.Authorize(r, name); err != nil {
			return "", nil, &httpError{http.StatusForbidden, err.Error()}
		}
	}
	msg, res, err := act(s, r)
	if err == nil {
		s.log.Info("pgqrs ui: action", "action", name, "result", msg)
	}
	return msg, res, err
}

func (s *server) apiAction(w http.ResponseWriter, r *http.Request) {
	msg, res, err := s.runAction(r)
	if err != nil {
		st, text := s.classify(r, err)
		s.fail(w, r, st, text)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "action": r.PathValue("action"), "message": msg, "result": res})
}

// formAction runs the action of an HTML form and sends the browser back
// to the page it came from, with the outcome as a one-time message. A
// refusal (read-only, CSRF, Authorize) is an error page.
func (s *server) formAction(w http.ResponseWriter, r *http.Request) {
	msg, _, err := s.runAction(r)
	if err != nil {
		st, text := s.classify(r, err)
		if st == http.StatusForbidden || st == http.StatusInternalServerError {
			s.fail(w, r, st, text)
			return
		}
		msg = "!" + text
	}
	http.SetCookie(w, &http.Cookie{Name: flashCookie, Value: url.QueryEscape(msg), Path: s.cookiePath(),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: 60})
	http.Redirect(w, r, s.backTo(param(r, "back")), http.StatusSeeOther)
}

// backTo accepts only a path of this dashboard as the place to return to.
func (s *server) backTo(back string) string {
	home := s.opts.Prefix + "/"
	u, err := url.Parse(back)
	if err != nil || back == "" || u.Scheme != "" || u.Host != "" || strings.HasPrefix(back, "//") ||
		strings.Contains(back, "\\") || !strings.HasPrefix(u.Path, home) {
		return home
	}
	return u.RequestURI()
}
