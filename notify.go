package pgqrs

import (
	"log/slog"
	"strconv"
	"sync"
)

// Wakeups. A Store tells the goroutines of its own process that something
// happened, so that they look now instead of at their next poll: a Run loop
// that its queue has new messages, a Runs.Wait that its run ended. On Postgres
// the same news also travels between processes by NOTIFY on the dialect's
// notifyChannel (the enqueue, run-end and run-status statements send it at
// commit), and every Store with a DSN listens. Wakeups are hints: whoever
// waits also polls, and looks again after every (re)connect of the
// listener.

// topic is what a wakeup is about.
type topic struct {
	kind topicKind
	id   int64
}

type topicKind uint8

const (
	queueTopic    topicKind = iota + 1 // new messages are visible in queue id
	runTopic                           // run id ended (or was cancelled)
	scheduleTopic                      // a schedule was added or resumed (id 0): schedulers look again
	eventTopic                         // run id set an event (SetEvent)
)

func queueWake(queueID int64) topic { return topic{queueTopic, queueID} }
func runWake(runID int64) topic     { return topic{runTopic, runID} }
func eventWake(runID int64) topic   { return topic{eventTopic, runID} }

// parseTopic reads a NOTIFY payload: "q" and a queue ID, or "r" or "e"
// and a run ID, as the dialect's notification fragments write them (pgWake,
// pgSignalSQL).
func parseTopic(payload string) (topic, bool) {
	if len(payload) < 2 {
		return topic{}, false
	}
	id, err := strconv.ParseInt(payload[1:], 10, 64)
	if err != nil || id <= 0 {
		return topic{}, false
	}
	switch payload[0] {
	case 'q':
		return queueWake(id), true
	case 'r':
		return runWake(id), true
	case 'e':
		return eventWake(id), true
	}
	return topic{}, false
}

// notifier fans wakeups out to the waiters of this process, per topic.
type notifier struct {
	mu   sync.Mutex
	subs map[topic]map[chan struct{}]struct{}
}

// subscribe returns a channel that receives (coalesced) wakeups for t, and
// the function that ends the subscription.
func (s *Store) subscribe(t topic) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	n := &s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.subs == nil {
		n.subs = map[topic]map[chan struct{}]struct{}{}
	}
	if n.subs[t] == nil {
		n.subs[t] = map[chan struct{}]struct{}{}
	}
	n.subs[t][ch] = struct{}{}
	return ch, func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		delete(n.subs[t], ch)
		if len(n.subs[t]) == 0 {
			delete(n.subs, t)
		}
	}
}

// wake signals the waiters of t.
func (s *Store) wake(t topic) {
	n := &s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	signal(n.subs[t])
}

// wakeAll signals every waiter, for a catch-up after notifications may
// have been missed.
func (s *Store) wakeAll() {
	n := &s.notify
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, subs := range n.subs {
		signal(subs)
	}
}

func signal(subs map[chan struct{}]struct{}) {
	for ch := range subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// startListener starts the Store's LISTEN connection once, where the
// backend has one and the Store knows a DSN to open it with.
func (s *Store) startListener(log *slog.Logger) {
	if s.d.listen == nil || s.listenDSN == "" {
		return
	}
	s.listenOnce.Do(func() {
		s.listenMu.Lock()
		defer s.listenMu.Unlock()
		if s.closed.Load() {
			return
		}
		s.stopListen = s.d.listen(s.listenDSN, s.d.notifyChannel,
			func(payload string) {
				if t, ok := parseTopic(payload); ok {
					s.wake(t)
				}
			},
			func() {
				log.Debug("pgqrs: listening for notifications", "channel", s.d.notifyChannel)
				s.listening.Store(true)
				s.wakeAll() // catch up on anything sent while not listening
			})
	})
}
