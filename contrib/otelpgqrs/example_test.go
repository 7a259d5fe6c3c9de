package otelpgqrs_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/contrib/otelpgqrs"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	_ "modernc.org/sqlite" // the SQLite driver pgqrs opens
)

// A Store traced with OpenTelemetry: the handling span is the enqueue
// span's child, found through the traceparent header pgqrs carried.
func Example() {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)) // your exporter here
	mw, err := otelpgqrs.New(otelpgqrs.WithTracerProvider(tp))
	if err != nil {
		panic(err)
	}
	dir, _ := os.MkdirTemp("", "otelpgqrs")
	defer os.RemoveAll(dir)
	s, err := pgqrs.Open(ctx, "sqlite:"+filepath.Join(dir, "app.db"), pgqrs.WithMiddleware(mw))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	s.Admin().Install(ctx)
	s.Admin().CreateQueue(ctx, "emails")
	p, _ := s.Producer(ctx, "emails")
	p.Enqueue(ctx, map[string]string{"to": "ada@example.com"})

	c, _ := s.Consumer(ctx, "emails")
	rctx, stop := context.WithCancel(ctx)
	c.Run(rctx, func(ctx context.Context, m *pgqrs.Message) error {
		fmt.Println("traceparent header set:", m.Headers["traceparent"] != "")
		stop()
		return nil
	}, &pgqrs.RunOptions{PollInterval: 10 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})

	spans := rec.Ended()
	fmt.Println(spans[0].Name(), "→", spans[1].Name())
	fmt.Println("same trace:", spans[0].SpanContext().TraceID() == spans[1].SpanContext().TraceID())
	fmt.Println("child of the enqueue span:", spans[1].Parent().SpanID() == spans[0].SpanContext().SpanID())
	// Output:
	// traceparent header set: true
	// pgqrs.enqueue emails → pgqrs.process emails
	// same trace: true
	// child of the enqueue span: true
}
