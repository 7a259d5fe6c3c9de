// Package otelpgqrs traces and measures pgqrs with OpenTelemetry.
//
// [New] returns a middleware for [pgqrs.WithMiddleware]. It makes
//
//   - a producer span per enqueue or trigger ("pgqrs.enqueue <queue>"),
//     whose trace context it writes into every message's headers
//     (W3C traceparent/tracestate by default);
//   - a consumer span per handler call ("pgqrs.process <queue>", or
//     "pgqrs.workflow.run <workflow>" for a delivery of a workflow run),
//     the child of the enqueue span read back from the message's headers
//     and linked to it, with an event for what happened to each message:
//     pgqrs.archive, pgqrs.retry (with the delay), pgqrs.dead_letter or
//     pgqrs.wait (a workflow run suspended);
//   - a span per attempt of a workflow step ("pgqrs.workflow.step <step>"),
//     the child of the run's span;
//   - the counters and histograms listed in docs/observability.md, and,
//     with [Middleware.ObserveQueues], per-queue gauges read from
//     [pgqrs.Admin.AllQueueMetrics].
//
// Providers default to the global ones (otel.GetTracerProvider and so on).
package otelpgqrs

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// ScopeName is the instrumentation scope of the tracer and meter.
const ScopeName = "github.com/pgqrs/pgqrs-go/contrib/otelpgqrs"

// Option configures [New].
type Option func(*config)

type config struct {
	tp   trace.TracerProvider
	mp   metric.MeterProvider
	prop propagation.TextMapPropagator
}

// WithTracerProvider sets the tracer provider. Default otel.GetTracerProvider().
func WithTracerProvider(tp trace.TracerProvider) Option { return func(c *config) { c.tp = tp } }

// WithMeterProvider sets the meter provider. Default otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option { return func(c *config) { c.mp = mp } }

// WithPropagator sets how trace context is written to and read from message
// headers. Default: W3C trace context and baggage.
func WithPropagator(p propagation.TextMapPropagator) Option { return func(c *config) { c.prop = p } }

// Middleware implements [pgqrs.EnqueueMiddleware], [pgqrs.HandleMiddleware]
// and [pgqrs.StepMiddleware]. Make it with [New]; it is safe for concurrent
// use and may serve several Stores.
type Middleware struct {
	tracer trace.Tracer
	meter  metric.Meter
	prop   propagation.TextMapPropagator

	enqueued, handled, failed, dead metric.Int64Counter
	duration, latency               metric.Float64Histogram
}

// New returns the middleware; an error only if an instrument cannot be
// created by the meter provider.
func New(opts ...Option) (*Middleware, error) {
	c := config{}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	m := &Middleware{tracer: c.tp.Tracer(ScopeName), meter: c.mp.Meter(ScopeName), prop: c.prop}
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		i, err := m.meter.Int64Counter(name, metric.WithDescription(desc), metric.WithUnit("{message}"))
		errs = append(errs, err)
		return i
	}
	m.enqueued = counter("pgqrs.messages.enqueued", "Messages enqueued (workflow runs triggered), by queue.")
	m.handled = counter("pgqrs.messages.handled", "Messages whose handler succeeded, by queue.")
	m.failed = counter("pgqrs.messages.failed", "Handler failures, retried or dead-lettered, by queue.")
	m.dead = counter("pgqrs.messages.dead_lettered", "Messages dead-lettered by a handler failure, by queue.")
	var err error
	m.duration, err = m.meter.Float64Histogram("pgqrs.handler.duration", metric.WithUnit("s"),
		metric.WithDescription("Time in the handler (a workflow run's execution), by queue and outcome."))
	errs = append(errs, err)
	m.latency, err = m.meter.Float64Histogram("pgqrs.message.latency", metric.WithUnit("s"),
		metric.WithDescription("From enqueue to the start of the first delivery, by queue (includes a requested delay)."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("otelpgqrs: %w", err)
	}
	return m, nil
}

var system = attribute.String("messaging.system", "pgqrs")

func queueAttr(q string) attribute.KeyValue { return attribute.String("messaging.destination.name", q) }

// headerCarrier writes into an enqueue's headers.
type headerCarrier struct{ e *pgqrs.EnqueueInfo }

func (h headerCarrier) Get(key string) string { v, _ := h.e.Header(key); return v }
func (h headerCarrier) Set(key, value string) { h.e.SetHeader(key, value) }
func (h headerCarrier) Keys() []string        { return nil }

// InterceptEnqueue starts the producer span and writes its context into the
// messages' headers.
func (m *Middleware) InterceptEnqueue(ctx context.Context, e *pgqrs.EnqueueInfo, next func(context.Context) error) error {
	name := "pgqrs.enqueue " + e.Queue
	attrs := []attribute.KeyValue{system, queueAttr(e.Queue), attribute.String("messaging.operation.type", "send"),
		attribute.Int("messaging.batch.message_count", e.Count), attribute.Bool("pgqrs.in_tx", e.InTx)}
	if e.Workflow != "" {
		name = "pgqrs.trigger " + e.Workflow
		attrs = append(attrs, attribute.String("pgqrs.workflow", e.Workflow))
	}
	ctx, span := m.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	defer span.End()
	m.prop.Inject(ctx, headerCarrier{e})
	err := next(ctx)
	if err != nil && !errors.Is(err, pgqrs.ErrDuplicate) {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	if len(e.IDs) == 1 {
		key := "messaging.message.id"
		if e.Workflow != "" {
			key = "pgqrs.run.id"
		}
		span.SetAttributes(attribute.Int64(key, e.IDs[0]))
	} else if len(e.IDs) > 1 {
		span.SetAttributes(attribute.Int64Slice("pgqrs.ids", e.IDs))
	}
	if errors.Is(err, pgqrs.ErrDuplicate) {
		span.AddEvent("pgqrs.duplicate")
	}
	m.enqueued.Add(ctx, int64(len(e.IDs)), metric.WithAttributes(queueAttr(e.Queue)))
	return err
}

// InterceptHandle starts the consumer span, a child of the enqueue span
// found in the (first) message's headers and linked to every message's.
func (m *Middleware) InterceptHandle(ctx context.Context, d *pgqrs.Delivery, next func(context.Context) error) error {
	start := time.Now()
	qa := metric.WithAttributes(queueAttr(d.Queue))
	var links []trace.Link
	parent := ctx
	for i, msg := range d.Messages {
		pctx := m.prop.Extract(ctx, propagation.MapCarrier(msg.Headers))
		if sc := trace.SpanContextFromContext(pctx); sc.IsValid() {
			links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attribute.Int64("messaging.message.id", msg.ID)}})
			if i == 0 {
				parent = pctx
			}
		}
		if msg.ReadCount == 1 {
			m.latency.Record(ctx, start.Sub(msg.EnqueuedAt).Seconds(), qa)
		}
	}
	name := "pgqrs.process " + d.Queue
	attrs := []attribute.KeyValue{system, queueAttr(d.Queue), attribute.String("messaging.operation.type", "process"),
		attribute.String("pgqrs.worker", d.Worker), attribute.Int64("pgqrs.worker.id", d.WorkerID)}
	if len(d.Messages) == 1 {
		attrs = append(attrs, attribute.Int64("messaging.message.id", d.Messages[0].ID),
			attribute.Int("messaging.message.delivery_count", d.Messages[0].ReadCount))
	} else {
		attrs = append(attrs, attribute.Int("messaging.batch.message_count", len(d.Messages)))
	}
	if d.Workflow != "" {
		name = "pgqrs.workflow.run " + d.Workflow
		attrs = append(attrs, attribute.String("pgqrs.workflow", d.Workflow))
	}
	ctx, span := m.tracer.Start(parent, name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...), trace.WithAttributes(attrs...))
	defer span.End()
	err := next(ctx)
	if d.RunID != 0 {
		span.SetAttributes(attribute.Int64("pgqrs.run.id", d.RunID))
	}
	outcome := "archive"
	for _, msg := range d.Messages {
		o := d.Outcome(msg, err)
		ev := []attribute.KeyValue{attribute.Int64("messaging.message.id", msg.ID), attribute.Int("pgqrs.attempt", msg.ReadCount)}
		switch o.Kind {
		case pgqrs.OutcomeArchive:
			span.AddEvent("pgqrs.archive", trace.WithAttributes(ev...))
			m.handled.Add(ctx, 1, qa)
		case pgqrs.OutcomeRetry:
			outcome = "retry"
			span.AddEvent("pgqrs.retry", trace.WithAttributes(append(ev, attribute.Float64("pgqrs.retry.delay_seconds", o.Delay.Seconds()))...))
			m.failed.Add(ctx, 1, qa)
		case pgqrs.OutcomeDeadLetter:
			outcome = "dead_letter"
			span.AddEvent("pgqrs.dead_letter", trace.WithAttributes(ev...))
			m.failed.Add(ctx, 1, qa)
			m.dead.Add(ctx, 1, qa)
		case pgqrs.OutcomeWait:
			outcome = "wait"
			span.AddEvent("pgqrs.wait", trace.WithAttributes(append(ev, attribute.Float64("pgqrs.wait.seconds", o.Delay.Seconds()))...))
		case pgqrs.OutcomeReturn:
			outcome = "return"
			span.AddEvent("pgqrs.return", trace.WithAttributes(ev...))
		}
	}
	if err != nil && outcome != "wait" {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	m.duration.Record(ctx, time.Since(start).Seconds(), metric.WithAttributes(queueAttr(d.Queue), attribute.String("pgqrs.outcome", outcome)))
	return err
}

// InterceptStep starts a span per attempt of a step's function.
func (m *Middleware) InterceptStep(ctx context.Context, s *pgqrs.StepAttempt, next func(context.Context) error) error {
	ctx, span := m.tracer.Start(ctx, "pgqrs.workflow.step "+s.Step, trace.WithAttributes(system,
		attribute.String("pgqrs.workflow", s.Workflow), attribute.Int64("pgqrs.run.id", s.RunID),
		attribute.String("pgqrs.step", s.Step), attribute.Int("pgqrs.attempt", s.Attempt)))
	defer span.End()
	err := next(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	return err
}

// ObserveQueues registers gauges of every queue of s, read with one
// [pgqrs.Admin.AllQueueMetrics] per collection: pgqrs.queue.messages (by
// queue and state: visible, leased, delayed, archived, dead) and
// pgqrs.queue.oldest_pending_age (seconds). Unregister the returned
// registration before closing s.
func (m *Middleware) ObserveQueues(s *pgqrs.Store) (metric.Registration, error) {
	if s == nil {
		return nil, fmt.Errorf("otelpgqrs: %w: nil store", pgqrs.ErrInvalidArgument)
	}
	depth, err := m.meter.Int64ObservableGauge("pgqrs.queue.messages", metric.WithUnit("{message}"),
		metric.WithDescription("Messages of a queue by state (visible, leased, delayed, archived, dead)."))
	if err != nil {
		return nil, fmt.Errorf("otelpgqrs: %w", err)
	}
	age, err := m.meter.Float64ObservableGauge("pgqrs.queue.oldest_pending_age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest message not leased, by queue; 0 when none."))
	if err != nil {
		return nil, fmt.Errorf("otelpgqrs: %w", err)
	}
	return m.meter.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		qs, err := s.Admin().AllQueueMetrics(ctx)
		if err != nil {
			return err
		}
		for _, q := range qs {
			for _, st := range []struct {
				state string
				n     int64
			}{{"visible", q.Visible}, {"leased", q.Leased}, {"delayed", q.Delayed}, {"archived", q.Archived}, {"dead", q.Dead}} {
				o.ObserveInt64(depth, st.n, metric.WithAttributes(queueAttr(q.Queue), attribute.String("pgqrs.state", st.state)))
			}
			o.ObserveFloat64(age, q.OldestPendingAge.Seconds(), metric.WithAttributes(queueAttr(q.Queue)))
		}
		return nil
	}, depth, age)
}
