package main

import (
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/pgqrs/pgqrs-go"
)

// message is recv's JSON message; times must parse as RFC 3339.
type message struct {
	ID         int64     `json:"id"`
	Queue      string    `json:"queue"`
	Payload    any       `json:"payload"`
	ReadCount  int       `json:"read_count"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	VisibleAt  time.Time `json:"visible_at"`
	LastError  string    `json:"last_error"`
}

// metrics is the JSON of one queue's metrics.
type metrics struct {
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

// archived is the JSON of an archived message or dead letter.
type archived struct {
	ID         int64     `json:"id"`
	Queue      string    `json:"queue"`
	Payload    any       `json:"payload"`
	ReadCount  int       `json:"read_count"`
	EnqueuedAt time.Time `json:"enqueued_at"`
	ArchivedAt time.Time `json:"archived_at"`
	Dead       bool      `json:"dead"`
	LastError  string    `json:"last_error"`
}

// worker is the JSON of a registered worker.
type worker struct {
	ID          int64      `json:"id"`
	Name        string     `json:"name"`
	Queue       string     `json:"queue"`
	Role        string     `json:"role"`
	Status      string     `json:"status"`
	StartedAt   time.Time  `json:"started_at"`
	HeartbeatAt time.Time  `json:"heartbeat_at"`
	StoppedAt   *time.Time `json:"stopped_at"`
}

// counts are the metrics the tests compare; the oldest-pending fields vary.
var counts = cmpopts.IgnoreFields(metrics{}, "OldestPendingAgeSeconds", "OldestPendingAt")

// sendIDs runs send with --json and returns the new IDs.
func (b *backend) sendIDs(stdin string, args ...string) []int64 {
	b.t.Helper()
	r := b.run(stdin, append([]string{"--json", "send"}, args...)...)
	if r.code != 0 {
		b.t.Fatalf("send %s: exit %d, stderr: %s", strings.Join(args, " "), r.code, r.stderr)
	}
	var out struct {
		IDs []int64 `json:"ids"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		b.t.Fatalf("send %s: %v; stdout: %s", strings.Join(args, " "), err, r.stdout)
	}
	return out.IDs
}

func (b *backend) metrics(queue string) metrics {
	b.t.Helper()
	var m metrics
	b.json(&m, "metrics", queue)
	return m
}

// liveWorkers fails the test if a one-shot command left a worker running.
func (b *backend) noLiveWorkers() {
	b.t.Helper()
	var ws []worker
	b.json(&ws, "workers", "list", "--live")
	if len(ws) != 0 {
		b.t.Errorf("live workers left behind: %+v", ws)
	}
}

// keys returns the sorted keys of a JSON object.
func keys(t *testing.T, doc string) []string {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, doc)
	}
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestSchemaCommands(t *testing.T) {
	for _, name := range backendNames {
		t.Run(name, func(t *testing.T) {
			b := newBackend(t, name)
			b.fails(1, `run "pgqrs install" first`, "queue", "list")
			r := b.run("", "--json", "verify")
			var v struct {
				OK       bool     `json:"ok"`
				Problems []string `json:"problems"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || r.code != 1 || v.OK || len(v.Problems) == 0 {
				t.Errorf("verify before install: exit %d, %v, %+v; want 1 and problems", r.code, err, v)
			}
			if !strings.Contains(r.stderr, "schema check failed") {
				t.Errorf("verify before install: stderr %q", r.stderr)
			}
			b.ok("install")
			b.ok("install") // idempotent
			var counted map[string]int64
			b.json(&counted, "recount")
			if diff := cmp.Diff(map[string]int64{"live_messages": 0, "archived": 0, "dead": 0}, counted); diff != "" {
				t.Errorf("recount of an empty store (-want +got):\n%s", diff)
			}
			b.json(&v, "verify")
			if diff := cmp.Diff(struct {
				OK       bool     `json:"ok"`
				Problems []string `json:"problems"`
			}{true, []string{}}, v); diff != "" {
				t.Errorf("verify after install (-want +got):\n%s", diff)
			}
		})
	}
}

func TestQueueCommands(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		out := b.ok("--json", "queue", "create", "emails")
		if diff := cmp.Diff([]string{"created_at", "id", "name", "paused"}, keys(t, out)); diff != "" {
			t.Errorf("queue create keys (-want +got):\n%s", diff)
		}
		b.ok("queue", "create", "audit")
		b.fails(1, `create queue "emails": queue already exists`, "queue", "create", "emails")
		b.fails(2, "invalid name", "queue", "create", "no spaces")

		var qs []struct {
			Name      string    `json:"name"`
			CreatedAt time.Time `json:"created_at"`
		}
		b.json(&qs, "queue", "list")
		var names []string
		for _, q := range qs {
			names = append(names, q.Name)
			if q.CreatedAt.IsZero() {
				t.Errorf("queue %s: no created_at", q.Name)
			}
		}
		if diff := cmp.Diff([]string{"audit", "emails"}, names); diff != "" {
			t.Errorf("queue list (-want +got):\n%s", diff)
		}
		if out := b.ok("queue", "list"); !strings.HasPrefix(out, "ID  NAME") || !strings.Contains(out, "emails") {
			t.Errorf("queue list table:\n%s", out)
		}

		var all []metrics
		b.json(&all, "metrics")
		if diff := cmp.Diff([]metrics{{Queue: "audit"}, {Queue: "emails"}}, all); diff != "" {
			t.Errorf("metrics of all queues (-want +got):\n%s", diff)
		}

		b.sendIDs("", "emails", `{"to":"ada"}`)
		b.fails(1, "queue in use", "queue", "delete", "emails")
		var purged map[string]any
		b.json(&purged, "queue", "purge", "emails")
		if diff := cmp.Diff(map[string]any{"queue": "emails", "purged": 1.0}, purged); diff != "" {
			t.Errorf("queue purge (-want +got):\n%s", diff)
		}
		var deleted map[string]string
		b.json(&deleted, "queue", "delete", "emails")
		if diff := cmp.Diff(map[string]string{"deleted": "emails"}, deleted); diff != "" {
			t.Errorf("queue delete (-want +got):\n%s", diff)
		}
		b.ok("queue", "delete", "audit")
		b.fails(1, `queue "audit": queue not found`, "queue", "delete", "audit")
		if out := b.ok("--json", "queue", "list"); strings.TrimSpace(out) != "[]" {
			t.Errorf("queue list of no queues: %q, want []", out)
		}
	})
}

func TestUnknownQueue(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		for _, args := range [][]string{
			{"send", "nope", "{}"},
			{"recv", "nope"},
			{"metrics", "nope"},
			{"queue", "purge", "nope"},
			{"archive", "list", "nope"},
			{"dlq", "list", "nope"},
			{"dlq", "replay", "nope", "--all"},
			{"dlq", "purge", "nope"},
			{"workers", "list", "nope"},
		} {
			b.fails(1, `queue "nope": queue not found`, args...)
		}
		b.noLiveWorkers()
	})
}

func TestSendRecvArchive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "jobs")
		before := time.Now().Add(-time.Minute)
		ids := b.sendIDs("", "jobs", `{"n": 1, "tags": ["a", "b"]}`)
		ids = append(ids, b.sendIDs(`{"n": 2}`+"\n", "jobs", "-")...)
		ids = append(ids, b.sendIDs("", "jobs", "[3]", "--count", "3")...)
		if len(ids) != 5 || !increasing(ids) {
			t.Fatalf("send: IDs %v, want 5 increasing", ids)
		}
		// Text output: one ID per line.
		if out := b.ok("send", "jobs", "true", "--count", "2"); len(strings.Fields(out)) != 2 {
			t.Errorf("send --count 2 printed %q, want two IDs", out)
		}
		b.ok("queue", "purge", "jobs")
		ids = b.sendIDs("", "jobs", `{"n": 1, "tags": ["a", "b"]}`)
		ids = append(ids, b.sendIDs(`{"n": 2}`, "jobs")...) // stdin without "-"
		ids = append(ids, b.sendIDs("", "jobs", "[3]", "--count", "3")...)

		out := b.ok("--json", "recv", "jobs", "--batch", "10", "--archive")
		var raw []json.RawMessage
		if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) == 0 {
			t.Fatalf("recv: %v: %s", err, out)
		}
		wantKeys := []string{"enqueued_at", "id", "payload", "priority", "queue", "read_count", "visible_at"}
		if diff := cmp.Diff(wantKeys, keys(t, string(raw[0]))); diff != "" {
			t.Errorf("recv message keys (-want +got):\n%s", diff)
		}
		var got []message
		if err := json.Unmarshal([]byte(out), &got); err != nil {
			t.Fatalf("recv: %v", err)
		}
		want := []message{
			{ID: ids[0], Queue: "jobs", Payload: map[string]any{"n": 1.0, "tags": []any{"a", "b"}}, ReadCount: 1},
			{ID: ids[1], Queue: "jobs", Payload: map[string]any{"n": 2.0}, ReadCount: 1},
			{ID: ids[2], Queue: "jobs", Payload: []any{3.0}, ReadCount: 1},
			{ID: ids[3], Queue: "jobs", Payload: []any{3.0}, ReadCount: 1},
			{ID: ids[4], Queue: "jobs", Payload: []any{3.0}, ReadCount: 1},
		}
		if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(message{}, "EnqueuedAt", "VisibleAt")); diff != "" {
			t.Errorf("recv --archive (-want +got):\n%s", diff)
		}
		for _, m := range got {
			if m.EnqueuedAt.Before(before) || !m.VisibleAt.After(m.EnqueuedAt) {
				t.Errorf("message %d: enqueued_at %v, visible_at %v", m.ID, m.EnqueuedAt, m.VisibleAt)
			}
		}

		if out := b.ok("--json", "recv", "jobs", "--batch", "10"); strings.TrimSpace(out) != "[]" {
			t.Errorf("recv of an empty queue: %q, want []", out)
		}
		if out := b.ok("recv", "jobs"); !strings.Contains(out, `no visible messages in queue "jobs"`) {
			t.Errorf("recv of an empty queue, as text: %q", out)
		}
		if diff := cmp.Diff(metrics{Queue: "jobs", Archived: 5}, b.metrics("jobs"), counts); diff != "" {
			t.Errorf("metrics after recv --archive (-want +got):\n%s", diff)
		}

		var arch []archived
		b.json(&arch, "archive", "list", "jobs", "--limit", "2")
		wantArch := []archived{
			{ID: ids[4], Queue: "jobs", Payload: []any{3.0}, ReadCount: 1},
			{ID: ids[3], Queue: "jobs", Payload: []any{3.0}, ReadCount: 1},
		}
		if diff := cmp.Diff(wantArch, arch, cmpopts.IgnoreFields(archived{}, "EnqueuedAt", "ArchivedAt")); diff != "" {
			t.Errorf("archive list --limit 2 (-want +got):\n%s", diff)
		}
		b.json(&arch, "archive", "list", "jobs", "--before", itoa(ids[3]))
		if len(arch) != 3 || arch[0].ID != ids[2] || arch[0].ArchivedAt.IsZero() {
			t.Errorf("archive list --before %d: %+v", ids[3], arch)
		}
		if out := b.ok("archive", "list", "jobs"); !strings.Contains(out, "PAYLOAD") || !strings.Contains(out, `{"n":2}`) {
			t.Errorf("archive list table:\n%s", out)
		}
		b.noLiveWorkers()
	})
}

// TestRecvWithoutArchive checks that recv without --archive hides the
// messages for --vt, then they are delivered again.
func TestRecvWithoutArchive(t *testing.T) {
	const vt = 1500 * time.Millisecond
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "jobs")
		id := b.sendIDs("", "jobs", `{"n": 1}`)[0]
		var got []message
		start := time.Now()
		b.json(&got, "recv", "jobs", "--vt", vt.String())
		if len(got) != 1 || got[0].ID != id || got[0].ReadCount != 1 {
			t.Fatalf("first recv: %+v", got)
		}
		if d := time.Until(got[0].VisibleAt); d > vt {
			t.Errorf("visible_at %v is more than %v from now", got[0].VisibleAt, vt)
		}
		b.noLiveWorkers()
		var again []message
		b.json(&again, "recv", "jobs")
		m := b.metrics("jobs")
		if time.Since(start) < vt { // else this machine is too slow to tell
			if len(again) != 0 {
				t.Errorf("recv within --vt: %+v, want nothing", again)
			}
			if diff := cmp.Diff(metrics{Queue: "jobs", Pending: 1, Delayed: 1}, m, counts); diff != "" {
				t.Errorf("metrics within --vt (-want +got):\n%s", diff)
			}
		}
		for deadline := time.Now().Add(vt + 5*time.Second); ; {
			b.json(&again, "recv", "jobs", "--archive")
			if len(again) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if len(again) != 1 || again[0].ID != id || again[0].ReadCount != 2 {
			t.Errorf("recv after --vt: %+v, want message %d read twice", again, id)
		}
		if waited := time.Since(start); waited < vt-100*time.Millisecond {
			t.Errorf("message delivered again after %v, before --vt %v", waited, vt)
		}
	})
}

func TestDelayedSend(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "later")
		b.sendIDs("", "later", `"tomorrow"`, "--delay", "1h")
		if out := b.ok("--json", "recv", "later"); strings.TrimSpace(out) != "[]" {
			t.Errorf("recv of a delayed message: %q, want []", out)
		}
		m := b.metrics("later")
		if diff := cmp.Diff(metrics{Queue: "later", Pending: 1, Delayed: 1}, m, counts); diff != "" {
			t.Errorf("metrics (-want +got):\n%s", diff)
		}
		if m.OldestPendingAt == nil {
			t.Errorf("oldest_pending_at is null with a pending message")
		}
		if out := b.ok("metrics", "later"); !strings.Contains(out, "DELAYED") {
			t.Errorf("metrics table:\n%s", out)
		}
	})
}

// TestDeadLetters uses a small demo run to make dead letters on every
// backend, then lists, replays and purges them.
func TestDeadLetters(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("demo", "--queue", "dq", "--messages", "100", "--workers", "2")
		var dead []archived
		b.json(&dead, "dlq", "list", "dq")
		want := []archived{
			{ID: 100, Queue: "dq", Payload: map[string]any{"n": 100.0, "fail": true}, ReadCount: 3, Dead: true},
			{ID: 50, Queue: "dq", Payload: map[string]any{"n": 50.0, "fail": true}, ReadCount: 3, Dead: true},
		}
		opts := cmpopts.IgnoreFields(archived{}, "EnqueuedAt", "ArchivedAt", "LastError")
		if diff := cmp.Diff(want, dead, opts); diff != "" {
			t.Fatalf("dlq list (-want +got):\n%s", diff)
		}
		for _, d := range dead {
			if !strings.Contains(d.LastError, "always fails") {
				t.Errorf("dead letter %d: last_error %q", d.ID, d.LastError)
			}
		}
		if out := b.ok("dlq", "list", "dq"); !strings.Contains(out, "LAST ERROR") || !strings.Contains(out, "always fails") {
			t.Errorf("dlq list table:\n%s", out)
		}

		var res map[string]any
		b.json(&res, "dlq", "replay", "dq", "50", "12345")
		if diff := cmp.Diff(map[string]any{"queue": "dq", "replayed": 1.0}, res); diff != "" {
			t.Errorf("dlq replay 50 (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(metrics{Queue: "dq", Pending: 1, Visible: 1, Archived: 98, Dead: 1}, b.metrics("dq"), counts); diff != "" {
			t.Errorf("metrics after replay (-want +got):\n%s", diff)
		}
		var got []message
		b.json(&got, "recv", "dq", "--archive", "--batch", "5")
		// A replayed dead letter starts afresh: read count 1 now, no last error.
		if len(got) != 1 || got[0].ID != 50 || got[0].ReadCount != 1 || got[0].LastError != "" {
			t.Errorf("recv of the replayed message: %+v", got)
		}

		b.json(&res, "dlq", "replay", "dq", "--all")
		if diff := cmp.Diff(map[string]any{"queue": "dq", "replayed": 1.0}, res); diff != "" {
			t.Errorf("dlq replay --all (-want +got):\n%s", diff)
		}
		b.json(&res, "dlq", "purge", "dq")
		if diff := cmp.Diff(map[string]any{"queue": "dq", "purged": 0.0}, res); diff != "" {
			t.Errorf("dlq purge of none (-want +got):\n%s", diff)
		}
		b.ok("demo", "--queue", "dq", "--messages", "50", "--workers", "1")
		b.json(&res, "dlq", "purge", "dq")
		if diff := cmp.Diff(map[string]any{"queue": "dq", "purged": 1.0}, res); diff != "" {
			t.Errorf("dlq purge (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(metrics{Queue: "dq", Archived: 49}, b.metrics("dq"), counts); diff != "" {
			t.Errorf("metrics after purge (-want +got):\n%s", diff)
		}
	})
}

func TestWorkerCommands(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "jobs")
		b.sendIDs("", "jobs", "{}")
		b.ok("recv", "jobs", "--archive")

		var ws []worker
		b.json(&ws, "workers", "list", "jobs")
		var roles []string
		for _, w := range ws {
			roles = append(roles, w.Role+" "+w.Status)
			if w.Queue != "jobs" || w.Name == "" || w.StartedAt.IsZero() || w.StoppedAt == nil {
				t.Errorf("worker %+v", w)
			}
		}
		if diff := cmp.Diff([]string{"producer stopped", "consumer stopped"}, roles); diff != "" {
			t.Errorf("workers list (-want +got):\n%s", diff)
		}
		if out := b.ok("workers", "list"); !strings.Contains(out, "HEARTBEAT") || !strings.Contains(out, "consumer") {
			t.Errorf("workers list table:\n%s", out)
		}

		type health struct {
			Queue                                           *string
			Ready, Polling, Suspended, Interrupted, Stopped int64
			Stale                                           int64
		}
		var h health
		b.json(&h, "workers", "health")
		if diff := cmp.Diff(health{Stopped: 2}, h); diff != "" {
			t.Errorf("workers health (-want +got):\n%s", diff)
		}
		queue := "jobs"
		b.json(&h, "workers", "health", "jobs", "--stale", "1m")
		if diff := cmp.Diff(health{Queue: &queue, Stopped: 2}, h); diff != "" {
			t.Errorf("workers health jobs (-want +got):\n%s", diff)
		}

		var res map[string]int64
		b.json(&res, "workers", "reclaim", "--stale", "1m")
		if diff := cmp.Diff(map[string]int64{"workers": 0, "messages": 0}, res); diff != "" {
			t.Errorf("workers reclaim (-want +got):\n%s", diff)
		}
		// stop: a live consumer holding a message; then again (a no-op).
		s := b.store()
		c, err := s.Consumer(t.Context(), "jobs")
		if err != nil {
			t.Fatal(err)
		}
		b.sendIDs("", "jobs", "{}")
		if msgs, err := c.Dequeue(t.Context(), 1); err != nil || len(msgs) != 1 {
			t.Fatalf("dequeue = %v, %v", msgs, err)
		}
		id := strconv.FormatInt(c.ID(), 10)
		b.json(&res, "workers", "stop", id)
		if diff := cmp.Diff(map[string]int64{"worker": c.ID(), "released": 1}, res); diff != "" {
			t.Errorf("workers stop (-want +got):\n%s", diff)
		}
		if out := b.ok("workers", "stop", id); !strings.Contains(out, "released 0 messages") {
			t.Errorf("second workers stop: %s", out)
		}
		if _, err := c.Dequeue(t.Context(), 1); !errors.Is(err, pgqrs.ErrWorkerStopped) {
			t.Errorf("dequeue after workers stop = %v, want ErrWorkerStopped", err)
		}
		b.fails(1, "worker not found", "workers", "stop", "999999")
		b.fails(2, "not a worker ID", "workers", "stop", "x")
		b.ok("recv", "jobs", "--archive")

		b.json(&res, "workers", "purge")
		if diff := cmp.Diff(map[string]int64{"purged": 0}, res); diff != "" {
			t.Errorf("workers purge of recent workers (-want +got):\n%s", diff)
		}
		b.json(&res, "workers", "purge", "--older-than", "0s")
		if diff := cmp.Diff(map[string]int64{"purged": 5}, res); diff != "" {
			t.Errorf("workers purge --older-than 0s (-want +got):\n%s", diff)
		}
		if out := b.ok("--json", "workers", "list"); strings.TrimSpace(out) != "[]" {
			t.Errorf("workers list after purge: %s", out)
		}
	})
}

func increasing(ids []int64) bool {
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			return false
		}
	}
	return true
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestSendJobOptions: send's --priority, --key, --unique-for and --header,
// the duplicate report, and recv and archive list showing priority and
// headers.
func TestSendJobOptions(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "jobs")
		type sent struct {
			IDs       []int64 `json:"ids"`
			Duplicate bool    `json:"duplicate"`
		}
		send := func(args ...string) sent {
			t.Helper()
			var s sent
			b.json(&s, append([]string{"send", "jobs"}, args...)...)
			return s
		}
		low := send(`"low"`, "--priority", "7")
		first := send(`{"n": 1}`, "--key", "invoice-42", "--header", "trace=t-1", "--header", "tenant=acme", "--priority", "2")
		if first.Duplicate || len(first.IDs) != 1 {
			t.Fatalf("first send with a key = %+v", first)
		}
		again := send(`{"n": 2}`, "--key", "invoice-42", "--unique-for", "24h")
		if diff := cmp.Diff(sent{IDs: first.IDs, Duplicate: true}, again); diff != "" {
			t.Errorf("send of a taken key (-want +got):\n%s", diff)
		}
		if out := b.ok("send", "jobs", "{}", "--key", "invoice-42"); !strings.Contains(out, itoa(first.IDs[0])) || !strings.Contains(out, "duplicate") {
			t.Errorf("text output of a duplicate: %q", out)
		}
		if s := send("{}", "--count", "2"); s.Duplicate || len(s.IDs) != 2 {
			t.Errorf("send --count 2 = %+v", s)
		}
		b.fails(2, "--unique-for needs --key", "send", "jobs", "{}", "--unique-for", "1h")
		b.fails(2, "--priority must be 0 to 9", "send", "jobs", "{}", "--priority", "10")
		b.fails(2, "one key cannot be unique to several messages", "send", "jobs", "{}", "--key", "k", "--count", "2")
		b.fails(2, "want key=value", "send", "jobs", "{}", "--header", "novalue")
		b.fails(2, "want key=value", "send", "jobs", "{}", "--header", "=v")
		b.fails(2, "invalid argument: key of 600 bytes, limit 512", "send", "jobs", "{}", "--key", strings.Repeat("k", 600))

		type recvd struct {
			ID       int64             `json:"id"`
			Priority int               `json:"priority"`
			Headers  map[string]string `json:"headers"`
		}
		var got []recvd
		b.json(&got, "recv", "jobs", "--batch", "10", "--archive")
		want := []recvd{
			{ID: got[0].ID}, {ID: got[1].ID}, // the two of --count, priority 0
			{ID: first.IDs[0], Priority: 2, Headers: map[string]string{"tenant": "acme", "trace": "t-1"}},
			{ID: low.IDs[0], Priority: 7},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("recv: most urgent first, with headers (-want +got):\n%s", diff)
		}
		out := b.ok("archive", "list", "jobs")
		if !strings.Contains(out, "PRIORITY") || !strings.Contains(out, `{"tenant":"acme","trace":"t-1"}`) {
			t.Errorf("archive list shows no priority or headers:\n%s", out)
		}
		// Archived, the key is free again, unless --unique-for covers it.
		if s := send("{}", "--key", "invoice-42", "--unique-for", "1h"); !s.Duplicate || s.IDs[0] != first.IDs[0] {
			t.Errorf("send with --unique-for of an archived key = %+v", s)
		}
		if s := send("{}", "--key", "invoice-42"); s.Duplicate {
			t.Errorf("send of an archived key = %+v", s)
		}
		b.noLiveWorkers()
	})
}

func TestMetricsPrometheus(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b *backend) {
		b.ok("queue", "create", "emails")
		b.sendIDs("", "emails", `{"a":1}`)
		b.sendIDs("", "--delay", "1h", "emails", `{"b":2}`)
		out := b.ok("metrics", "--prometheus")
		for _, line := range []string{
			"# TYPE pgqrs_queue_messages gauge",
			`pgqrs_queue_messages{queue="emails",state="visible"} 1`,
			`pgqrs_queue_messages{queue="emails",state="delayed"} 1`,
			`pgqrs_queue_messages{queue="emails",state="leased"} 0`,
			`pgqrs_queue_messages{queue="emails",state="dead"} 0`,
			"# TYPE pgqrs_queue_oldest_pending_age_seconds gauge",
			`pgqrs_queue_paused{queue="emails"} 0`,
		} {
			if !strings.Contains(out, line+"\n") {
				t.Errorf("metrics --prometheus lacks %q; output:\n%s", line, out)
			}
		}
		b.fails(2, "takes no QUEUE", "metrics", "--prometheus", "emails")
		b.fails(2, "exclude each other", "--json", "metrics", "--prometheus")
	})
}
