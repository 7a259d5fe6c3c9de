package pgqrs

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// The reads behind dashboards (the ui package, pgqrs ui): a queue's live
// messages by state and its recent throughput. They count and walk rows;
// call them from admin tools, not from hot paths.

// MessageState is the state of a live message, as [Admin.ListMessages]
// reports it.
type MessageState string

// The states of a live message. They partition a queue's live messages as
// [QueueMetrics] counts them: Visible + Leased + Delayed.
const (
	// MessageVisible: claimable now (a message whose lease expired included).
	MessageVisible MessageState = "visible"
	// MessageLeased: held by a consumer whose lease has not expired.
	MessageLeased MessageState = "leased"
	// MessageDelayed: not yet visible (enqueued with a delay, or released
	// with one) and held by no one.
	MessageDelayed MessageState = "delayed"
)

// LiveMessage is a message still in its queue (not archived), as
// [Admin.ListMessages] returns it.
type LiveMessage struct {
	ID        int64             `json:"id"`
	Queue     string            `json:"queue"`
	State     MessageState      `json:"state"`
	Payload   json.RawMessage   `json:"payload"`
	Headers   map[string]string `json:"headers,omitempty"`
	Priority  int               `json:"priority"`
	ReadCount int               `json:"read_count"` // deliveries so far
	// EnqueuedAt is when it was enqueued; VisibleAt when it is (or became)
	// visible: for a leased message, when its lease expires.
	EnqueuedAt time.Time `json:"enqueued_at"`
	VisibleAt  time.Time `json:"visible_at"`
	// FirstClaimedAt is its first delivery (zero before it).
	FirstClaimedAt time.Time `json:"first_claimed_at,omitzero"`
	// ConsumerID is the worker that holds, or last held, its lease (0: none).
	ConsumerID int64  `json:"consumer_id,omitempty"`
	LastError  string `json:"last_error,omitempty"`
}

// MessagePage selects one page of [Admin.ListMessages]: at most Limit
// messages (default 100, at most the store's batch limit) in State (""
// for every state) with IDs below BeforeID (0: from the newest). Pass the
// last ID of a page as the next page's BeforeID.
type MessagePage struct {
	State    MessageState
	Limit    int
	BeforeID int64
}

// ListMessages returns a page of the queue's live messages, newest ID
// first, with their payloads and headers. It returns [ErrQueueNotFound]
// for an unknown queue and [ErrInvalidArgument] for an unknown state or a
// negative limit or ID.
func (a *Admin) ListMessages(ctx context.Context, queue string, page MessagePage) ([]*LiveMessage, error) {
	switch page.State {
	case "", MessageVisible, MessageLeased, MessageDelayed:
	default:
		return nil, fmt.Errorf("list messages of %q: %w: unknown state %q (want visible, leased or delayed)", queue, ErrInvalidArgument, page.State)
	}
	var err error
	if page.Limit, page.BeforeID, err = a.pageBounds("list messages", queue, page.Limit, page.BeforeID); err != nil {
		return nil, err
	}
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return nil, err
	}
	var out []*LiveMessage
	err = a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		out, err = a.s.messages.list(ctx, db, q, page.State, page.BeforeID, page.Limit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list messages of %q: %w", queue, err)
	}
	return out, nil
}

// ThroughputPoint is one minute of a queue's [Admin.Throughput].
type ThroughputPoint struct {
	// Minute is the start of the minute (UTC, by the database clock).
	Minute time.Time `json:"minute"`
	// Archived is how many messages were archived (processed) in it; dead
	// letters and cancelled messages are not counted.
	Archived int64 `json:"archived"`
	// AvgLatency and MaxLatency are the average and longest wait of those
	// messages from enqueue to their first delivery. In JSON they are
	// "avg_latency_seconds" and "max_latency_seconds".
	AvgLatency time.Duration `json:"-"`
	MaxLatency time.Duration `json:"-"`
}

// MarshalJSON writes the latencies in seconds.
func (p ThroughputPoint) MarshalJSON() ([]byte, error) {
	type fields ThroughputPoint // without this method
	return json.Marshal(struct {
		fields
		Avg float64 `json:"avg_latency_seconds"`
		Max float64 `json:"max_latency_seconds"`
	}{fields(p), p.AvgLatency.Seconds(), p.MaxLatency.Seconds()})
}

// MaxThroughputMinutes is the longest history [Admin.Throughput] returns,
// and ThroughputScanLimit how many of a queue's newest archived messages
// it reads at most: on a queue that archives more than that in the window,
// the oldest minutes show fewer messages than were processed.
const (
	MaxThroughputMinutes = 60
	ThroughputScanLimit  = 20000
)

// Throughput returns the queue's processed messages per minute over the
// last minutes minutes (1 to [MaxThroughputMinutes]), oldest first, one
// point per minute, the current one included (minutes with nothing
// archived have zeros). It reads the queue's newest archived messages (at
// most [ThroughputScanLimit]), so it depends on the archive: messages
// deleted rather than archived, or an archive purged, are not counted.
// It returns [ErrQueueNotFound] for an unknown queue and
// [ErrInvalidArgument] for minutes out of range.
func (a *Admin) Throughput(ctx context.Context, queue string, minutes int) ([]ThroughputPoint, error) {
	if minutes < 1 || minutes > MaxThroughputMinutes {
		return nil, fmt.Errorf("throughput of %q: %w: %d minutes (want 1 to %d)", queue, ErrInvalidArgument, minutes, MaxThroughputMinutes)
	}
	q, err := a.GetQueue(ctx, queue)
	if err != nil {
		return nil, err
	}
	var got []ThroughputPoint
	err = a.s.read(ctx, func(ctx context.Context, db querier) (err error) {
		got, err = a.s.stats.throughput(ctx, db, q.ID, time.Duration(minutes-1)*time.Minute, ThroughputScanLimit)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("throughput of %q: %w", queue, err)
	}
	// One point per minute, ending at the newest of this process's minute
	// and the database's (their clocks may differ a little).
	end := time.Now().UTC().Truncate(time.Minute)
	if n := len(got); n > 0 && got[n-1].Minute.After(end) {
		end = got[n-1].Minute
	}
	byMinute := make(map[time.Time]ThroughputPoint, len(got))
	for _, p := range got {
		byMinute[p.Minute] = p
	}
	out := make([]ThroughputPoint, minutes)
	for i := range out {
		m := end.Add(-time.Duration(minutes-1-i) * time.Minute)
		p, ok := byMinute[m]
		if !ok {
			p = ThroughputPoint{Minute: m}
		}
		out[i] = p
	}
	return out, nil
}
