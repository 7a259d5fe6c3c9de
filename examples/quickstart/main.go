// Command quickstart enqueues a few messages and processes them, on an
// embedded SQLite database: no server, no setup.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"sync/atomic"

	"github.com/pgqrs/pgqrs-go"
	_ "modernc.org/sqlite"
)

type Email struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

func main() {
	dsn := "sqlite:quickstart.db"
	if len(os.Args) > 1 {
		dsn = os.Args[1] // e.g. postgres://user:pass@localhost/app?sslmode=disable
	}
	if err := run(context.Background(), dsn); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, dsn string) error {
	s, err := pgqrs.Open(ctx, dsn)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil { // idempotent
		return err
	}
	if _, err := s.Admin().CreateQueue(ctx, "emails"); err != nil && !errors.Is(err, pgqrs.ErrQueueExists) {
		return err
	}

	p, err := s.Producer(ctx, "emails")
	if err != nil {
		return err
	}
	defer p.Shutdown(ctx)
	ids, err := p.EnqueueBatch(ctx, []any{
		Email{To: "ada@example.com", Subject: "Welcome"},
		Email{To: "alan@example.com", Subject: "Your report"},
	})
	if err != nil {
		return err
	}
	fmt.Println("enqueued", ids)

	c, err := s.Consumer(ctx, "emails")
	if err != nil {
		return err
	}
	// Run calls the handler for each message until its context is cancelled:
	// nil archives the message, an error retries it later with backoff.
	runCtx, stop := context.WithCancel(ctx)
	var sent atomic.Int64
	return c.Run(runCtx, func(ctx context.Context, m *pgqrs.Message) error {
		var e Email
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			return err
		}
		fmt.Printf("sending %q to %s\n", e.Subject, e.To)
		if sent.Add(1) == int64(len(ids)) {
			stop() // done for this demo; a service runs until shutdown
		}
		return nil
	}, &pgqrs.RunOptions{Concurrency: 4})
}
