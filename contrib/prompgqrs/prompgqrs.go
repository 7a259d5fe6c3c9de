// Package prompgqrs exposes pgqrs's metrics to Prometheus through
// client_golang.
//
// A [Collector] is two things: a [prometheus.Collector] that reads the
// per-queue gauges of the Stores given to [Collector.Observe] at each
// scrape ([pgqrs.Admin.AllQueueMetrics], one statement), and a pgqrs
// middleware (give it to [pgqrs.WithMiddleware]) that counts what this
// process enqueues and handles:
//
//	c := prompgqrs.New()
//	s, err := pgqrs.Open(ctx, dsn, pgqrs.WithMiddleware(c))
//	c.Observe(s)
//	prometheus.MustRegister(c)
//	http.Handle("/metrics", promhttp.Handler())
//
// The gauges carry the names `pgqrs metrics --prometheus` prints; the full
// list, with the counters and histograms, is in docs/observability.md.
package prompgqrs

import (
	"context"
	"sync"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"github.com/prometheus/client_golang/prometheus"
)

// Collector collects pgqrs metrics; see the package doc. Make it with [New].
type Collector struct {
	timeout time.Duration

	mu     sync.Mutex
	stores []*pgqrs.Store

	messages, oldest, paused *prometheus.Desc
	enqueued, handled        *prometheus.CounterVec
	failed, dead             *prometheus.CounterVec
	duration, latency        *prometheus.HistogramVec
}

// Option configures [New].
type Option func(*Collector)

// WithScrapeTimeout bounds the read of the queue gauges in one scrape.
// Default 10s.
func WithScrapeTimeout(d time.Duration) Option {
	return func(c *Collector) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// New returns a Collector observing no Store yet.
func New(opts ...Option) *Collector {
	queue := []string{"queue"}
	c := &Collector{
		timeout:  10 * time.Second,
		messages: prometheus.NewDesc("pgqrs_queue_messages", "Messages of a queue by state (visible, leased, delayed, archived, dead).", []string{"queue", "state"}, nil),
		oldest:   prometheus.NewDesc("pgqrs_queue_oldest_pending_age_seconds", "Age of the oldest message not leased, by the database clock; 0 when none.", queue, nil),
		paused:   prometheus.NewDesc("pgqrs_queue_paused", "1 while the queue is paused, else 0.", queue, nil),
		enqueued: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgqrs_messages_enqueued_total", Help: "Messages enqueued (workflow runs triggered) by this process."}, queue),
		handled:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgqrs_messages_handled_total", Help: "Messages whose handler succeeded in this process."}, queue),
		failed:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgqrs_messages_failed_total", Help: "Handler failures in this process, retried or dead-lettered."}, queue),
		dead:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pgqrs_messages_dead_lettered_total", Help: "Messages dead-lettered by a handler failure in this process."}, queue),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pgqrs_handler_duration_seconds", Help: "Time in the handler (a workflow run's execution), by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}, []string{"queue", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "pgqrs_message_latency_seconds", Help: "From enqueue to the start of the first delivery (includes a requested delay).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}, queue),
	}
	for _, o := range opts {
		if o != nil {
			o(c)
		}
	}
	return c
}

// Observe adds s's queues to the gauges collected at each scrape.
func (c *Collector) Observe(s *pgqrs.Store) {
	if s == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stores = append(c.stores, s)
}

// Describe implements [prometheus.Collector].
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.oldest
	ch <- c.paused
	for _, v := range []prometheus.Collector{c.enqueued, c.handled, c.failed, c.dead, c.duration, c.latency} {
		v.Describe(ch)
	}
}

// Collect implements [prometheus.Collector]: the counters, and the gauges
// of every observed Store read now. A Store whose read fails yields an
// invalid metric, which fails the scrape with its error.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range []prometheus.Collector{c.enqueued, c.handled, c.failed, c.dead, c.duration, c.latency} {
		v.Collect(ch)
	}
	c.mu.Lock()
	stores := append([]*pgqrs.Store(nil), c.stores...)
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	for _, s := range stores {
		qs, err := s.Admin().AllQueueMetrics(ctx)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.messages, err)
			continue
		}
		for _, q := range qs {
			for _, st := range []struct {
				state string
				n     int64
			}{{"visible", q.Visible}, {"leased", q.Leased}, {"delayed", q.Delayed}, {"archived", q.Archived}, {"dead", q.Dead}} {
				ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(st.n), q.Queue, st.state)
			}
			ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, q.OldestPendingAge.Seconds(), q.Queue)
			paused := 0.0
			if q.Paused {
				paused = 1
			}
			ch <- prometheus.MustNewConstMetric(c.paused, prometheus.GaugeValue, paused, q.Queue)
		}
	}
}

// InterceptEnqueue counts enqueued messages ([pgqrs.EnqueueMiddleware]).
func (c *Collector) InterceptEnqueue(ctx context.Context, e *pgqrs.EnqueueInfo, next func(context.Context) error) error {
	err := next(ctx)
	if err == nil {
		c.enqueued.WithLabelValues(e.Queue).Add(float64(len(e.IDs)))
	}
	return err
}

// InterceptHandle counts outcomes and times handlers ([pgqrs.HandleMiddleware]).
func (c *Collector) InterceptHandle(ctx context.Context, d *pgqrs.Delivery, next func(context.Context) error) error {
	start := time.Now()
	for _, m := range d.Messages {
		if m.ReadCount == 1 {
			c.latency.WithLabelValues(d.Queue).Observe(start.Sub(m.EnqueuedAt).Seconds())
		}
	}
	err := next(ctx)
	outcome := "archive"
	for _, m := range d.Messages {
		switch o := d.Outcome(m, err); o.Kind {
		case pgqrs.OutcomeArchive:
			c.handled.WithLabelValues(d.Queue).Inc()
		case pgqrs.OutcomeRetry:
			outcome = "retry"
			c.failed.WithLabelValues(d.Queue).Inc()
		case pgqrs.OutcomeDeadLetter:
			outcome = "dead_letter"
			c.failed.WithLabelValues(d.Queue).Inc()
			c.dead.WithLabelValues(d.Queue).Inc()
		case pgqrs.OutcomeWait:
			outcome = "wait"
		case pgqrs.OutcomeReturn:
			outcome = "return"
		}
	}
	c.duration.WithLabelValues(d.Queue, outcome).Observe(time.Since(start).Seconds())
	return err
}
