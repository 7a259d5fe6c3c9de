package prompgqrs_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/contrib/prompgqrs"
	"github.com/prometheus/client_golang/prometheus"
)

func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "prompgqrs")
	defer os.RemoveAll(dir)

	col := prompgqrs.New()
	s, err := pgqrs.Open(ctx, "sqlite:"+filepath.Join(dir, "app.db"), pgqrs.WithMiddleware(col))
	if err != nil {
		panic(err)
	}
	defer s.Close()
	col.Observe(s)
	reg := prometheus.NewRegistry()
	reg.MustRegister(col) // serve reg with promhttp.HandlerFor in a real program

	s.Admin().Install(ctx)
	s.Admin().CreateQueue(ctx, "emails")
	p, _ := s.Producer(ctx, "emails")
	p.Enqueue(ctx, map[string]string{"to": "ada@example.com"})

	fams, err := reg.Gather()
	if err != nil {
		panic(err)
	}
	for _, f := range fams {
		switch f.GetName() {
		case "pgqrs_messages_enqueued_total":
			fmt.Println(f.GetName(), f.GetMetric()[0].GetCounter().GetValue())
		case "pgqrs_queue_messages":
			fmt.Println(f.GetName(), len(f.GetMetric()), "samples")
		}
	}
	// Output:
	// pgqrs_messages_enqueued_total 1
	// pgqrs_queue_messages 5 samples
}
