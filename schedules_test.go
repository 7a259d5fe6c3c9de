package pgqrs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.DiscardHandler)

func mustAddSchedule(t *testing.T, s *Store, def Schedule) *ScheduleInfo {
	t.Helper()
	info, err := s.Schedules().Add(t.Context(), def)
	if err != nil {
		t.Fatalf("add schedule %q: %v", def.Name, err)
	}
	return info
}

func mustGetSchedule(t *testing.T, s *Store, name string) *ScheduleInfo {
	t.Helper()
	info, err := s.Schedules().Get(t.Context(), name)
	if err != nil {
		t.Fatalf("get schedule %q: %v", name, err)
	}
	return info
}

// occurrence is what a message says about the occurrence it stands for.
type occurrence struct {
	schedule string
	at       time.Time
	missed   int64
}

func (o occurrence) String() string {
	return fmt.Sprintf("%s(-%d)", o.at.Format(time.TimeOnly), o.missed)
}

func occurrenceOf(t *testing.T, h map[string]string) occurrence {
	t.Helper()
	at, err := time.Parse(time.RFC3339, h[HeaderScheduledAt])
	if err != nil {
		t.Fatalf("%s header %q: %v", HeaderScheduledAt, h[HeaderScheduledAt], err)
	}
	o := occurrence{schedule: h[HeaderSchedule], at: at}
	if m, ok := h[HeaderScheduleMissed]; ok {
		if o.missed, err = strconv.ParseInt(m, 10, 64); err != nil || o.missed < 1 {
			t.Fatalf("%s header %q", HeaderScheduleMissed, m)
		}
	}
	return o
}

func TestSchedulesAddGetListPauseResumeDelete(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if _, err := s.Admin().CreateQueue(ctx, "reports"); err != nil {
			t.Fatal(err)
		}
		sc := s.Schedules()
		if list, err := sc.List(ctx); err != nil || list == nil || len(list) != 0 {
			t.Fatalf("empty list = %v, %v", list, err)
		}
		before := time.Now()
		info := mustAddSchedule(t, s, Schedule{Name: "nightly", Cron: "0 3 * * *", TimeZone: "Europe/Berlin", Queue: "reports",
			Payload: map[string]int{"day": 1}, Priority: 4, Headers: map[string]string{"team": "ops"}})
		berlin := mustZone(t, "Europe/Berlin")
		spec, _ := parseCron("0 3 * * *", berlin)
		wantNext, _ := spec.next(before)
		if info.Name != "nightly" || info.Cron != "0 3 * * *" || info.TimeZone != "Europe/Berlin" || info.Queue != "reports" ||
			info.Workflow != "" || !sameJSON(info.Payload, []byte(`{"day":1}`)) || info.Priority != 4 || info.Headers["team"] != "ops" ||
			info.Paused || !info.NextRunAt.Equal(wantNext) || !info.LastRunAt.IsZero() {
			t.Errorf("added = %+v (want next %v)", info, wantNext)
		}
		if got := info.NextRunAt.In(berlin); got.Hour() != 3 || got.Minute() != 0 {
			t.Errorf("next run %v is not 03:00 in Berlin", got)
		}
		if got := mustGetSchedule(t, s, "nightly"); !got.NextRunAt.Equal(info.NextRunAt) || got.Queue != "reports" {
			t.Errorf("get = %+v", got)
		}
		mustAddSchedule(t, s, Schedule{Name: "a-first", Cron: "@every 10m", Queue: "reports"})
		list, err := sc.List(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "a-first" || list[1].Name != "nightly" {
			t.Fatalf("list = %+v, %v", list, err)
		}
		if list[0].TimeZone != "UTC" || string(list[0].Payload) != "null" {
			t.Errorf("defaults: zone %q, payload %s", list[0].TimeZone, list[0].Payload)
		}

		// Pause holds across a re-Add; Resume starts again after now.
		if err := sc.Pause(ctx, "nightly"); err != nil {
			t.Fatal(err)
		}
		if err := sc.Pause(ctx, "nightly"); err != nil {
			t.Errorf("second pause: %v", err)
		}
		again := mustAddSchedule(t, s, Schedule{Name: "nightly", Cron: "0 3 * * *", TimeZone: "Europe/Berlin", Queue: "reports", Payload: 2})
		if !again.Paused || !again.NextRunAt.Equal(info.NextRunAt) || !sameJSON(again.Payload, []byte(`2`)) || again.Headers != nil {
			t.Errorf("re-added = %+v", again)
		}
		if err := sc.Resume(ctx, "nightly"); err != nil {
			t.Fatal(err)
		}
		if got := mustGetSchedule(t, s, "nightly"); got.Paused || !got.NextRunAt.After(time.Now()) {
			t.Errorf("resumed = %+v", got)
		}
		if err := sc.Resume(ctx, "nightly"); err != nil {
			t.Errorf("resume of a running schedule: %v", err)
		}
		// A new cron takes effect at once.
		retimed := mustAddSchedule(t, s, Schedule{Name: "nightly", Cron: "@every 1h", Queue: "reports"})
		if want := time.Now().Truncate(time.Hour).Add(time.Hour); !retimed.NextRunAt.Equal(want) || retimed.TimeZone != "UTC" {
			t.Errorf("retimed next = %v (%s), want %v", retimed.NextRunAt, retimed.TimeZone, want)
		}

		if err := sc.Delete(ctx, "nightly"); err != nil {
			t.Fatal(err)
		}
		for what, err := range map[string]error{
			"get":     func() error { _, err := sc.Get(ctx, "nightly"); return err }(),
			"pause":   sc.Pause(ctx, "nightly"),
			"resume":  sc.Resume(ctx, "nightly"),
			"delete":  sc.Delete(ctx, "nightly"),
			"trigger": func() error { _, err := sc.Trigger(ctx, "nightly"); return err }(),
		} {
			if !errors.Is(err, ErrScheduleNotFound) {
				t.Errorf("%s of a deleted schedule = %v, want ErrScheduleNotFound", what, err)
			}
		}

		// Deleting the queue deletes its schedules.
		if err := s.Admin().DeleteQueue(ctx, "reports"); err != nil {
			t.Fatal(err)
		}
		if list, err := sc.List(ctx); err != nil || len(list) != 0 {
			t.Errorf("after the queue was deleted: %+v, %v", list, err)
		}
	})
}

func TestScheduleTriggerRunsNowOncePerCall(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		_, c := fixture(t, s, "jobs")
		info := mustAddSchedule(t, s, Schedule{Name: "cleanup", Cron: "@daily", Queue: "jobs", Payload: json.RawMessage(`{"all":true}`),
			Priority: 2, Headers: map[string]string{"tenant": "t1"}})
		if err := s.Schedules().Pause(ctx, "cleanup"); err != nil {
			t.Fatal(err)
		}
		before := time.Now().Truncate(time.Second)
		var ids []int64
		for range 2 {
			id, err := s.Schedules().Trigger(ctx, "cleanup")
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		msgs := mustDequeue(t, c, 10)
		if len(msgs) != 2 || !slices.Equal(msgIDs(msgs), sorted(ids...)) {
			t.Fatalf("dequeued %d messages %v, want %v", len(msgs), msgIDs(msgs), ids)
		}
		for _, m := range msgs {
			o := occurrenceOf(t, m.Headers)
			if o.schedule != "cleanup" || o.at.Before(before) || o.at.After(time.Now()) || o.missed != 0 ||
				m.Headers["tenant"] != "t1" || m.Priority != 2 || !sameJSON(m.Payload, []byte(`{"all":true}`)) {
				t.Errorf("triggered message = %+v", m)
			}
		}
		got := mustGetSchedule(t, s, "cleanup")
		if !got.NextRunAt.Equal(info.NextRunAt) || got.LastRunAt.Before(before) || !got.Paused {
			t.Errorf("after trigger = %+v", got)
		}
	})
}

func TestScheduleBadInput(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		if _, err := s.Admin().CreateQueue(ctx, "q"); err != nil {
			t.Fatal(err)
		}
		wf := NewWorkflow("wf", func(ctx context.Context, run *Run, in int) (int, error) { return in, nil })
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		ok := Schedule{Name: "s", Cron: "@hourly", Queue: "q"}
		with := func(f func(*Schedule)) Schedule { d := ok; f(&d); return d }
		for _, c := range []struct {
			what  string
			def   Schedule
			field string // "" for a sentinel that is no ScheduleError
			want  error
			text  string
		}{
			{"bad cron", with(func(d *Schedule) { d.Cron = "61 * * * *" }), "cron", ErrInvalidSchedule, `minute field "61"`},
			{"empty cron", with(func(d *Schedule) { d.Cron = "" }), "cron", ErrInvalidSchedule, "want 5"},
			{"short @every", with(func(d *Schedule) { d.Cron = "@every 100ms" }), "cron", ErrInvalidSchedule, "minimum of 1s"},
			{"unknown zone", with(func(d *Schedule) { d.TimeZone = "Mars/Olympus" }), "timezone", ErrInvalidSchedule, "Mars/Olympus"},
			{"local zone", with(func(d *Schedule) { d.TimeZone = "Local" }), "timezone", ErrInvalidSchedule, "Local"},
			{"no target", with(func(d *Schedule) { d.Queue = "" }), "target", ErrInvalidSchedule, "set Queue or Workflow"},
			{"both targets", with(func(d *Schedule) { d.Workflow = "wf" }), "target", ErrInvalidSchedule, "not both"},
			{"a workflow's queue", with(func(d *Schedule) { d.Queue = "wf" }), "target", ErrInvalidSchedule, `workflow "wf"`},
			{"bad payload", with(func(d *Schedule) { d.Payload = json.RawMessage(`{`) }), "payload", ErrInvalidPayload, "not valid JSON"},
			{"bad priority", with(func(d *Schedule) { d.Priority = 10 }), "priority", ErrInvalidArgument, "10"},
			{"reserved header", with(func(d *Schedule) { d.Headers = map[string]string{HeaderSchedule: "x"} }), "headers", ErrInvalidArgument, "reserved"},
			{"empty header key", with(func(d *Schedule) { d.Headers = map[string]string{"": "x"} }), "headers", ErrInvalidArgument, "empty"},
			{"unknown queue", with(func(d *Schedule) { d.Queue = "nope" }), "", ErrQueueNotFound, `"nope"`},
			{"unknown workflow", with(func(d *Schedule) { d.Queue, d.Workflow = "", "nope" }), "", ErrWorkflowNotFound, `"nope"`},
			{"bad name", with(func(d *Schedule) { d.Name = "no spaces" }), "", ErrInvalidName, "schedule name"},
		} {
			_, err := s.Schedules().Add(ctx, c.def)
			var se *ScheduleError
			switch {
			case !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.text):
				t.Errorf("%s: %v, want %v containing %q", c.what, err, c.want, c.text)
			case c.field != "" && (!errors.As(err, &se) || se.Field != c.field || !errors.Is(err, ErrInvalidSchedule)):
				t.Errorf("%s: %v, want a ScheduleError for %s", c.what, err, c.field)
			case c.field == "" && errors.As(err, &se):
				t.Errorf("%s: %v is a ScheduleError", c.what, err)
			}
		}
		if list, err := s.Schedules().List(ctx); err != nil || len(list) != 0 {
			t.Errorf("bad input stored schedules: %+v, %v", list, err)
		}
	})
}

func TestScheduleStartsWorkflowRuns(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		wf := NewWorkflow("digest", func(ctx context.Context, run *Run, in map[string]string) (string, error) {
			return "digest for " + in["list"], nil
		})
		if err := wf.Register(ctx, s); err != nil {
			t.Fatal(err)
		}
		info := mustAddSchedule(t, s, Schedule{Name: "weekly-digest", Cron: "@weekly", Workflow: "digest",
			Payload: map[string]string{"list": "news"}})
		if info.Workflow != "digest" || info.Queue != "" {
			t.Errorf("added = %+v", info)
		}
		id, err := s.Schedules().Trigger(ctx, "weekly-digest")
		if err != nil {
			t.Fatal(err)
		}
		// The scheduler's occurrence, as if it had come due.
		if _, err := s.fireDue(ctx, quiet, info.NextRunAt); err != nil {
			t.Fatal(err)
		}
		runs, err := s.Runs().List(ctx, RunFilter{Workflow: "digest"})
		if err != nil || len(runs) != 2 || runs[1].ID != id {
			t.Fatalf("runs = %+v, %v (triggered %d)", runs, err, id)
		}
		stopServe := serveInBackground(t, s, wf, fastPoll)
		for _, r := range runs {
			if !sameJSON(r.Input, []byte(`{"list":"news"}`)) {
				t.Errorf("run %d input %s", r.ID, r.Input)
			}
			if out, err := waitResult(t, s, wf, r.ID); err != nil || out != "digest for news" {
				t.Errorf("run %d = %q, %v", r.ID, out, err)
			}
		}
		if got := mustGetSchedule(t, s, "weekly-digest"); !got.LastRunAt.Equal(info.NextRunAt) || !got.NextRunAt.Equal(info.NextRunAt.AddDate(0, 0, 7)) {
			t.Errorf("after the occurrence: last %v, next %v", got.LastRunAt, got.NextRunAt)
		}
		// Deleting the workflow deletes its schedules.
		if err := stopServe(); err != nil {
			t.Fatal(err)
		}
		if err := s.Admin().DeleteWorkflow(ctx, "digest"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Schedules().Get(ctx, "weekly-digest"); !errors.Is(err, ErrScheduleNotFound) {
			t.Errorf("after the workflow was deleted: %v", err)
		}
	})
}

// TestScheduleMissedOccurrencesCollapse: a scheduler that looks 35 minutes
// after a ten-minutely schedule was due (none ran meanwhile) enqueues one
// message, for the latest occurrence, saying it stands for three missed
// ones, and the schedule continues from the first occurrence after now.
func TestScheduleMissedOccurrencesCollapse(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		ctx := t.Context()
		_, c := fixture(t, s, "ticks")
		info := mustAddSchedule(t, s, Schedule{Name: "tick", Cron: "*/10 * * * *", Queue: "ticks", Payload: 1})
		due := info.NextRunAt
		now := due.Add(35 * time.Minute)
		for range 2 { // the second look finds nothing due
			if _, err := s.fireDue(ctx, quiet, now); err != nil {
				t.Fatal(err)
			}
		}
		msgs := mustDequeue(t, c, 10)
		if len(msgs) != 1 {
			t.Fatalf("%d messages, want 1", len(msgs))
		}
		if o := occurrenceOf(t, msgs[0].Headers); o.schedule != "tick" || !o.at.Equal(due.Add(30*time.Minute)) || o.missed != 3 {
			t.Errorf("occurrence = %+v, want %v with 3 missed", o, due.Add(30*time.Minute))
		}
		got := mustGetSchedule(t, s, "tick")
		if !got.LastRunAt.Equal(due.Add(30*time.Minute)) || !got.NextRunAt.Equal(due.Add(40*time.Minute)) {
			t.Errorf("after the catch-up: last %v, next %v", got.LastRunAt, got.NextRunAt)
		}
		// On time: no missed header. A paused schedule does not fire.
		if _, err := s.fireDue(ctx, quiet, due.Add(40*time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.Schedules().Pause(ctx, "tick"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.fireDue(ctx, quiet, due.Add(50*time.Minute)); err != nil {
			t.Fatal(err)
		}
		msgs = mustDequeue(t, c, 10)
		if len(msgs) != 1 {
			t.Fatalf("%d messages, want 1", len(msgs))
		}
		if o := occurrenceOf(t, msgs[0].Headers); !o.at.Equal(due.Add(40*time.Minute)) || o.missed != 0 {
			t.Errorf("on-time occurrence = %+v", o)
		}
	})
}

// TestScheduleFiresInsideRun: a Run loop with Scheduler set fires the
// schedules; no other process is needed.
func TestScheduleFiresInsideRun(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, s *Store) {
		if _, err := s.Admin().CreateQueue(t.Context(), "beats"); err != nil {
			t.Fatal(err)
		}
		c, err := s.Consumer(t.Context(), "beats")
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan *Message, 10)
		stop := runInBackground(t, c, func(ctx context.Context, m *Message) error { got <- m; return nil },
			&RunOptions{Scheduler: true, Logger: quiet})
		mustAddSchedule(t, s, Schedule{Name: "beat", Cron: "@every 1s", Queue: "beats", Payload: "tick"})
		select {
		case m := <-got:
			if o := occurrenceOf(t, m.Headers); o.schedule != "beat" {
				t.Errorf("message %+v", m)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no occurrence within 10s")
		}
		if err := stop(); err != nil {
			t.Errorf("run: %v", err)
		}
	})
}

// TestSchedulersFireEachOccurrenceOnce runs several schedulers, each on its
// own Store and pool as separate processes would, over a schedule firing
// every second: every occurrence is enqueued exactly once. A scheduler that
// is late (the machine is busy) collapses what it missed into one message,
// which says how many it stands for, so the messages still account for
// every second exactly once. Turso gets two schedulers: sqld 0.24 can wedge
// when four or more connections write at once (TURSO.md).
func TestSchedulersFireEachOccurrenceOnce(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			schedulers := 3
			if strings.HasPrefix(b, "turso") {
				schedulers = 2
			}
			stores := separateStores(t, b, schedulers)
			s := stores[0]
			_, c := fixture(t, s, "ticks")
			first := mustAddSchedule(t, s, Schedule{Name: "tick", Cron: "@every 1s", Queue: "ticks"}).NextRunAt

			sctx, stop := context.WithCancel(ctx)
			var wg sync.WaitGroup
			errs := make([]error, schedulers)
			for i, st := range stores {
				wg.Go(func() { errs[i] = st.runScheduler(sctx, quiet) })
			}
			await(t, 20*time.Second, "four occurrences", func() bool {
				info, err := s.Schedules().Get(ctx, "tick")
				return err == nil && !info.LastRunAt.Before(first.Add(3*time.Second))
			})
			stop()
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Errorf("scheduler %d: %v", i, err)
				}
			}
			last := mustGetSchedule(t, s, "tick").LastRunAt

			var occs []occurrence
			for {
				msgs := mustDequeue(t, c, 100)
				if len(msgs) == 0 {
					break
				}
				for _, m := range msgs {
					occs = append(occs, occurrenceOf(t, m.Headers))
				}
			}
			slices.SortFunc(occs, func(a, b occurrence) int { return a.at.Compare(b.at) })
			if len(occs) < 2 {
				t.Fatalf("%d messages", len(occs))
			}
			collapsed := 0
			expect := first
			for i, o := range occs {
				if o.missed > 0 {
					collapsed++
				}
				if want := expect.Add(time.Duration(o.missed) * time.Second); !o.at.Equal(want) {
					t.Errorf("message %d is for %v standing for %d missed, want %v: occurrences %v", i, o.at, o.missed, want, occs)
					break
				}
				expect = o.at.Add(time.Second)
			}
			if !occs[len(occs)-1].at.Equal(last) {
				t.Errorf("last message for %v, last run %v", occs[len(occs)-1].at, last)
			}
			t.Logf("%d schedulers: %d messages for %v…%v, %d collapsed late ones", schedulers, len(occs),
				first.Format(time.TimeOnly), last.Format(time.TimeOnly), collapsed)
		})
	}
}
