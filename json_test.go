package pgqrs

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestResultTypesMarshalSnakeCase: the exported result types marshal to the
// documents `pgqrs --json` prints (docs/cli.md), with times that do not
// apply left out, so an application's status endpoint can serve them as is.
func TestResultTypesMarshalSnakeCase(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 1, 10, 0, 0, 500_000_000, time.UTC)
	for _, tt := range []struct {
		name string
		v    any
		want string
	}{
		{"message", &Message{ID: 1, Queue: "q", Payload: json.RawMessage(`{"a":1}`), ReadCount: 2, EnqueuedAt: at, VisibleAt: at},
			`{"id":1,"queue":"q","payload":{"a":1},"read_count":2,"enqueued_at":"2026-12-01T10:00:00.5Z","visible_at":"2026-12-01T10:00:00.5Z","priority":0}`},
		{"dead letter", &ArchivedMessage{ID: 1, Queue: "q", Payload: json.RawMessage(`1`), ReadCount: 5, EnqueuedAt: at, ArchivedAt: at, Dead: true, LastError: "boom"},
			`{"id":1,"queue":"q","payload":1,"read_count":5,"enqueued_at":"2026-12-01T10:00:00.5Z","archived_at":"2026-12-01T10:00:00.5Z","dead":true,"last_error":"boom","priority":0}`},
		{"queue", Queue{ID: 3, Name: "emails", CreatedAt: at},
			`{"id":3,"name":"emails","created_at":"2026-12-01T10:00:00.5Z","paused":false}`},
		{"paused queue", Queue{ID: 3, Name: "emails", CreatedAt: at, Paused: true, PausedAt: at},
			`{"id":3,"name":"emails","created_at":"2026-12-01T10:00:00.5Z","paused":true,"paused_at":"2026-12-01T10:00:00.5Z"}`},
		{"cancelled message", &ArchivedMessage{ID: 1, Queue: "q", Payload: json.RawMessage(`1`), ReadCount: 0, EnqueuedAt: at, ArchivedAt: at, Cancelled: true},
			`{"id":1,"queue":"q","payload":1,"read_count":0,"enqueued_at":"2026-12-01T10:00:00.5Z","archived_at":"2026-12-01T10:00:00.5Z","dead":false,"priority":0,"cancelled":true}`},
		{"idle metrics", QueueMetrics{Queue: "q", Archived: 7},
			`{"queue":"q","pending":0,"visible":0,"leased":0,"delayed":0,"archived":7,"dead":0,"paused":false,"in_flight":0,"oldest_pending_age_seconds":0}`},
		{"paused metrics", QueueMetrics{Queue: "q", Paused: true, PausedAt: at},
			`{"queue":"q","pending":0,"visible":0,"leased":0,"delayed":0,"archived":0,"dead":0,"paused":true,"paused_at":"2026-12-01T10:00:00.5Z","in_flight":0,"oldest_pending_age_seconds":0}`},
		{"busy metrics", QueueMetrics{Queue: "q", Pending: 1, Visible: 1, OldestPending: at, OldestPendingAge: 1500 * time.Millisecond, NewestEnqueued: at},
			`{"queue":"q","pending":1,"visible":1,"leased":0,"delayed":0,"archived":0,"dead":0,"paused":false,"oldest_pending_at":"2026-12-01T10:00:00.5Z","newest_enqueued_at":"2026-12-01T10:00:00.5Z","in_flight":0,"oldest_pending_age_seconds":1.5}`},
		{"live worker", WorkerInfo{ID: 7, Name: "w", Queue: "q", Role: "consumer", Status: WorkerPolling, StartedAt: at, HeartbeatAt: at},
			`{"id":7,"name":"w","queue":"q","role":"consumer","status":"polling","started_at":"2026-12-01T10:00:00.5Z","heartbeat_at":"2026-12-01T10:00:00.5Z"}`},
		{"all-queue health", WorkerHealth{Polling: 2, Stale: 1},
			`{"ready":0,"polling":2,"suspended":0,"interrupted":0,"stopped":0,"stale":1}`},
		{"stats", SystemStats{Queues: 1, SchemaVersion: 2},
			`{"queues":1,"live_messages":0,"archived":0,"dead":0,"live_workers":0,"workers":0,"schema_version":2}`},
		{"queued run in a list", &RunInfo{ID: 9, Workflow: "wf", Status: RunQueued, Input: json.RawMessage(`"x"`), CreatedAt: at, UpdatedAt: at},
			`{"id":9,"workflow":"wf","status":"QUEUED","input":"x","created_at":"2026-12-01T10:00:00.5Z","updated_at":"2026-12-01T10:00:00.5Z"}`},
		{"run with no steps yet", &RunInfo{ID: 9, Workflow: "wf", Status: RunQueued, Input: json.RawMessage(`"x"`), CreatedAt: at, UpdatedAt: at, Steps: []StepInfo{}},
			`{"id":9,"workflow":"wf","status":"QUEUED","input":"x","created_at":"2026-12-01T10:00:00.5Z","updated_at":"2026-12-01T10:00:00.5Z","steps":[]}`},
		{"failed step", StepInfo{Position: 1, Name: "charge", Status: StepFailed, Attempts: 2, Error: "declined", RetryAt: at, UpdatedAt: at},
			`{"position":1,"name":"charge","status":"ERROR","attempts":2,"error":"declined","retry_at":"2026-12-01T10:00:00.5Z","updated_at":"2026-12-01T10:00:00.5Z"}`},
		{"workflow", WorkflowInfo{Name: "wf", CreatedAt: at, Runs: map[RunStatus]int64{RunSucceeded: 3, RunPaused: 1}},
			`{"name":"wf","created_at":"2026-12-01T10:00:00.5Z","runs":{"cancelled":0,"cancelling":0,"error":0,"paused":1,"queued":0,"running":0,"success":3}}`},
	} {
		got, err := json.Marshal(tt.v)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if diff := cmp.Diff(tt.want, string(got)); diff != "" {
			t.Errorf("%s JSON (-want +got):\n%s", tt.name, diff)
		}
	}
}
