package pgqrs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/pgqrs/pgqrs-go"
	_ "modernc.org/sqlite"
)

// Example is the quick start: open an embedded SQLite store, install the
// schema, enqueue a message, then claim it and archive it.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pgqrs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := pgqrs.Open(ctx, "sqlite:"+filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Admin().CreateQueue(ctx, "emails"); err != nil {
		log.Fatal(err)
	}

	p, err := s.Producer(ctx, "emails")
	if err != nil {
		log.Fatal(err)
	}
	defer p.Shutdown(ctx)
	type email struct {
		To      string `json:"to"`
		Subject string `json:"subject"`
	}
	if _, err := p.Enqueue(ctx, email{To: "ada@example.com", Subject: "Welcome"}); err != nil {
		log.Fatal(err)
	}

	c, err := s.Consumer(ctx, "emails")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Shutdown(ctx)
	msgs, err := c.Dequeue(ctx, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		var e email
		if err := json.Unmarshal(m.Payload, &e); err != nil {
			log.Fatal(err)
		}
		fmt.Printf("sending %q to %s (attempt %d)\n", e.Subject, e.To, m.ReadCount)
		if err := c.Archive(ctx, m.ID); err != nil {
			log.Fatal(err)
		}
	}
	archived, err := s.Admin().CountArchived(ctx, "emails")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("archived:", archived)
	// Output:
	// sending "Welcome" to ada@example.com (attempt 1)
	// archived: 1
}

// ExampleProducer_EnqueueTx enqueues a message in the same transaction as
// the application's own write: both happen, or neither.
func ExampleProducer_EnqueueTx() {
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Admin().CreateQueue(ctx, "signups"); err != nil {
		log.Fatal(err)
	}
	if _, err := s.DB().ExecContext(ctx, `CREATE TABLE users (email TEXT PRIMARY KEY)`); err != nil {
		log.Fatal(err)
	}
	p, err := s.Producer(ctx, "signups")
	if err != nil {
		log.Fatal(err)
	}

	tx, err := s.DB().BeginTx(ctx, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer tx.Rollback() // no-op after Commit
	if _, err := tx.ExecContext(ctx, `INSERT INTO users (email) VALUES (?)`, "ada@example.com"); err != nil {
		log.Fatal(err)
	}
	if _, err := p.EnqueueTx(ctx, tx, map[string]string{"welcome": "ada@example.com"}); err != nil {
		log.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		log.Fatal(err)
	}

	m, err := s.Admin().QueueMetrics(ctx, "signups")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("visible:", m.Visible)
	// Output: visible: 1
}

// ExampleConsumer_Dequeue shows the settle calls: archive on success,
// release with a delay to retry later.
func ExampleConsumer_Dequeue() {
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Admin().CreateQueue(ctx, "jobs"); err != nil {
		log.Fatal(err)
	}
	p, _ := s.Producer(ctx, "jobs")
	if _, err := p.EnqueueBatch(ctx, []any{"ok", "fails", "ok"}); err != nil {
		log.Fatal(err)
	}
	c, _ := s.Consumer(ctx, "jobs")
	msgs, err := c.Dequeue(ctx, 10, pgqrs.VisibilityTimeout(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	var done []int64
	for _, m := range msgs {
		if string(m.Payload) == `"fails"` {
			// Retry in 30 seconds; the read count records the attempt.
			if err := c.Release(ctx, m.ID, 30*time.Second); err != nil {
				log.Fatal(err)
			}
			continue
		}
		done = append(done, m.ID)
	}
	if _, err := c.ArchiveBatch(ctx, done); err != nil { // one statement
		log.Fatal(err)
	}
	mt, _ := s.Admin().QueueMetrics(ctx, "jobs")
	fmt.Printf("archived %d, delayed %d\n", mt.Archived, mt.Delayed)
	// Output: archived 2, delayed 1
}

// ExampleConsumer_Run runs the poll loop: each message goes to the handler;
// success archives it, an error retries it after a backoff and, after
// MaxAttempts, dead-letters it.
func ExampleConsumer_Run() {
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Admin().CreateQueue(ctx, "thumbnails"); err != nil {
		log.Fatal(err)
	}
	p, _ := s.Producer(ctx, "thumbnails")
	if _, err := p.EnqueueBatch(ctx, []any{"a.png", "b.png", "c.png"}); err != nil {
		log.Fatal(err)
	}

	c, _ := s.Consumer(ctx, "thumbnails")
	runCtx, stop := context.WithCancel(ctx)
	handled := 0
	err = c.Run(runCtx, func(ctx context.Context, m *pgqrs.Message) error {
		var file string
		if err := json.Unmarshal(m.Payload, &file); err != nil {
			return err // retried later; dead-lettered after MaxAttempts
		}
		fmt.Println("resizing", file)
		if handled++; handled == 3 {
			stop() // Run finishes in-flight work, archives it and returns nil
		}
		return nil
	}, &pgqrs.RunOptions{Concurrency: 1})
	if err != nil {
		log.Fatal(err)
	}
	m, _ := s.Admin().QueueMetrics(ctx, "thumbnails")
	fmt.Println("archived:", m.Archived)
	// Output:
	// resizing a.png
	// resizing b.png
	// resizing c.png
	// archived: 3
}

// ExampleWorkflow defines a workflow of two steps, triggers a run, serves it
// and prints its typed result. Each step's result is stored when the step
// completes; after a crash the run starts over and the completed steps
// return their stored results instead of running again.
func ExampleWorkflow() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pgqrs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := pgqrs.Open(ctx, "sqlite:"+filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}

	type order struct {
		Item string `json:"item"`
		Qty  int    `json:"qty"`
	}
	type receipt struct {
		Total int    `json:"total"`
		Note  string `json:"note"`
	}
	checkout := pgqrs.NewWorkflow("checkout", func(ctx context.Context, run *pgqrs.Run, o order) (receipt, error) {
		price, err := pgqrs.Step(ctx, run, "price", func(ctx context.Context) (int, error) {
			return 7, nil // a call to a pricing service
		})
		if err != nil {
			return receipt{}, err
		}
		id, err := pgqrs.Step(ctx, run, "charge", func(ctx context.Context) (string, error) {
			return fmt.Sprintf("ch_%d", price*o.Qty), nil // a call to a payment service
		})
		if err != nil {
			return receipt{}, err
		}
		return receipt{Total: price * o.Qty, Note: id}, nil
	})
	if err := checkout.Register(ctx, s); err != nil { // idempotent; creates the queue "checkout"
		log.Fatal(err)
	}
	id, err := checkout.Trigger(ctx, s, order{Item: "pear", Qty: 3})
	if err != nil {
		log.Fatal(err)
	}

	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- checkout.Serve(serveCtx, s, &pgqrs.RunOptions{Concurrency: 4}) }()

	r, err := checkout.Result(ctx, s, id) // waits for the run to finish
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("total %d, %s\n", r.Total, r.Note)
	info, err := s.Runs().Get(ctx, id)
	if err != nil {
		log.Fatal(err)
	}
	for _, st := range info.Steps {
		fmt.Printf("step %s: %s %s\n", st.Name, st.Status, st.Output)
	}
	stop()
	if err := <-served; err != nil { // nil: a clean shutdown
		log.Fatal(err)
	}
	// Output:
	// total 21, ch_21
	// step price: SUCCESS 7
	// step charge: SUCCESS "ch_21"
}

// ExampleHandlerFor runs a typed handler: each payload arrives decoded into
// the handler's type, and one that does not decode is dead-lettered at once
// with the decode error, without retries.
func ExampleHandlerFor() {
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Admin().CreateQueue(ctx, "emails"); err != nil {
		log.Fatal(err)
	}
	type email struct {
		To string `json:"to"`
	}
	p, _ := s.Producer(ctx, "emails")
	bad, _ := p.Enqueue(ctx, "not an email")
	if _, err := p.Enqueue(ctx, email{To: "ada@example.com"}); err != nil {
		log.Fatal(err)
	}

	c, _ := s.Consumer(ctx, "emails")
	runCtx, stop := context.WithCancel(ctx)
	err = c.Run(runCtx, pgqrs.HandlerFor(func(ctx context.Context, m *pgqrs.Message, e email) error {
		fmt.Println("sending to", e.To)
		stop()
		return nil
	}), nil)
	if err != nil {
		log.Fatal(err)
	}
	dead, err := s.Admin().GetArchived(ctx, "emails", bad)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("dead letter after %d delivery: %s\n", dead.ReadCount, dead.LastError)
	// Output:
	// sending to ada@example.com
	// dead letter after 1 delivery: decode payload of message 1 as pgqrs_test.email: json: cannot unmarshal string into Go value of type pgqrs_test.email
}

// ExampleAdmin_PauseQueue pauses a queue: producers go on enqueueing, no
// consumer claims anything until the queue is resumed.
func ExampleAdmin_PauseQueue() {
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	a := s.Admin()
	if err := a.Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := a.CreateQueue(ctx, "reports"); err != nil {
		log.Fatal(err)
	}
	p, _ := s.Producer(ctx, "reports")
	c, _ := s.Consumer(ctx, "reports")

	if err := a.PauseQueue(ctx, "reports"); err != nil {
		log.Fatal(err)
	}
	if _, err := p.Enqueue(ctx, map[string]string{"month": "2026-11"}); err != nil {
		log.Fatal(err)
	}
	msgs, _ := c.Dequeue(ctx, 10)
	m, _ := a.QueueMetrics(ctx, "reports")
	fmt.Printf("paused: %v, visible: %d, claimed: %d\n", m.Paused, m.Visible, len(msgs))

	if err := a.ResumeQueue(ctx, "reports"); err != nil {
		log.Fatal(err)
	}
	msgs, _ = c.Dequeue(ctx, 10)
	fmt.Printf("after resume, claimed: %d\n", len(msgs))
	// Output:
	// paused: true, visible: 1, claimed: 0
	// after resume, claimed: 1
}

// ExampleAdmin_CancelMessage cancels a pending message and a leased one.
// Both stay in the archive, marked cancelled; the consumer holding the
// leased one learns of it when it settles.
func ExampleAdmin_CancelMessage() {
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	a := s.Admin()
	if err := a.Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := a.CreateQueue(ctx, "invoices"); err != nil {
		log.Fatal(err)
	}
	p, _ := s.Producer(ctx, "invoices")
	c, _ := s.Consumer(ctx, "invoices")
	leased, _ := p.Enqueue(ctx, map[string]int{"invoice": 41})
	pending, _ := p.Enqueue(ctx, map[string]int{"invoice": 42}, pgqrs.Delay(time.Hour))
	if _, err := c.Dequeue(ctx, 1); err != nil { // leases the first
		log.Fatal(err)
	}

	for _, id := range []int64{pending, leased} {
		if err := a.CancelMessage(ctx, "invoices", id); err != nil {
			log.Fatal(err)
		}
	}
	err = c.Archive(ctx, leased)
	fmt.Println("holder's archive:", errors.Is(err, pgqrs.ErrMessageCancelled))
	m, _ := a.GetArchived(ctx, "invoices", pending)
	fmt.Printf("message %d: cancelled %v, dead %v, payload %s\n", m.ID, m.Cancelled, m.Dead, m.Payload)
	err = a.CancelMessage(ctx, "invoices", pending)
	fmt.Println("cancel again:", errors.Is(err, pgqrs.ErrMessageNotFound))
	// Output:
	// holder's archive: true
	// message 2: cancelled true, dead false, payload {"invoice":42}
	// cancel again: true
}

// ExampleKey enqueues jobs with unique keys: a second enqueue of a key that
// a live message holds inserts nothing and returns the holder's ID with
// ErrDuplicate; EnqueueJobs reports duplicates per job, and a claim takes
// the most urgent message first.
func ExampleKey() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pgqrs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := pgqrs.Open(ctx, "sqlite:"+filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Admin().CreateQueue(ctx, "invoices"); err != nil {
		log.Fatal(err)
	}
	p, err := s.Producer(ctx, "invoices")
	if err != nil {
		log.Fatal(err)
	}
	defer p.Shutdown(ctx)

	first, err := p.Enqueue(ctx, map[string]int{"invoice": 42}, pgqrs.Key("invoice-42"))
	if err != nil {
		log.Fatal(err)
	}
	again, err := p.Enqueue(ctx, map[string]int{"invoice": 42}, pgqrs.Key("invoice-42"))
	fmt.Println("duplicate:", errors.Is(err, pgqrs.ErrDuplicate), "same message:", again == first)

	res, err := p.EnqueueJobs(ctx, []pgqrs.Job{
		{Payload: map[string]int{"invoice": 43}, Options: []pgqrs.EnqueueOption{pgqrs.Key("invoice-43"), pgqrs.Priority(5)}},
		{Payload: map[string]int{"invoice": 42}, Options: []pgqrs.EnqueueOption{pgqrs.Key("invoice-42")}},
		{Payload: "urgent", Options: []pgqrs.EnqueueOption{pgqrs.Priority(0), pgqrs.Header("tenant", "acme")}},
	})
	if err != nil {
		log.Fatal(err)
	}
	for i, r := range res {
		fmt.Printf("job %d: duplicate %v\n", i, r.Duplicate)
	}

	c, err := s.Consumer(ctx, "invoices")
	if err != nil {
		log.Fatal(err)
	}
	defer c.Shutdown(ctx)
	msgs, err := c.Dequeue(ctx, 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range msgs {
		fmt.Printf("priority %d: %s %v\n", m.Priority, m.Payload, m.Headers)
	}
	// Output:
	// duplicate: true same message: true
	// job 0: duplicate false
	// job 1: duplicate true
	// job 2: duplicate false
	// priority 0: {"invoice":42} map[]
	// priority 0: "urgent" map[tenant:acme]
	// priority 5: {"invoice":43} map[]
}

// ExampleSchedules_Add defines two periodic schedules and fires them in a
// consumer's Run loop (RunOptions.Scheduler), so no extra process is
// needed. Each occurrence is enqueued once however many processes run a
// scheduler; its message says which schedule and occurrence it is.
func ExampleSchedules_Add() {
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Admin().CreateQueue(ctx, "reports"); err != nil {
		log.Fatal(err)
	}

	// Add is idempotent: call it at every start.
	nightly, err := s.Schedules().Add(ctx, pgqrs.Schedule{
		Name:     "nightly",
		Cron:     "0 3 * * *", // 03:00 every day, in TimeZone
		TimeZone: "Europe/Berlin",
		Queue:    "reports",
		Payload:  map[string]string{"kind": "daily"},
	})
	if err != nil {
		log.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	fmt.Println("nightly runs next at", nightly.NextRunAt.In(berlin).Format("15:04"), "in Berlin")
	if _, err := s.Schedules().Add(ctx, pgqrs.Schedule{Name: "heartbeat", Cron: "@every 1s", Queue: "reports", Payload: "ping"}); err != nil {
		log.Fatal(err)
	}

	c, _ := s.Consumer(ctx, "reports")
	runCtx, stop := context.WithCancel(ctx)
	err = c.Run(runCtx, func(ctx context.Context, m *pgqrs.Message) error {
		if runCtx.Err() == nil {
			fmt.Printf("%s from schedule %q\n", m.Payload, m.Headers[pgqrs.HeaderSchedule])
			stop()
		}
		return nil
	}, &pgqrs.RunOptions{Scheduler: true})
	if err != nil {
		log.Fatal(err)
	}
	// Output:
	// nightly runs next at 03:00 in Berlin
	// "ping" from schedule "heartbeat"
}

// ExampleRecv runs a workflow that publishes its stage as an event and
// waits for an approval signal: the run holds no worker while it waits,
// and Runs.Send wakes it.
func ExampleRecv() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pgqrs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := pgqrs.Open(ctx, "sqlite:"+filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}

	type approval struct {
		By string `json:"by"`
	}
	publish := pgqrs.NewWorkflow("publish", func(ctx context.Context, run *pgqrs.Run, doc string) (string, error) {
		if err := pgqrs.SetEvent(ctx, run, "stage", "awaiting review"); err != nil {
			return "", err
		}
		a, ok, err := pgqrs.Recv[approval](ctx, run, "review", "approve", 24*time.Hour)
		if err != nil {
			return "", err // also "suspended until a signal or the timeout": return it
		}
		if !ok {
			return doc + " expired unreviewed", nil
		}
		return doc + " approved by " + a.By, pgqrs.SetEvent(ctx, run, "stage", "published")
	})
	id, err := publish.Trigger(ctx, s, "report.pdf")
	if err != nil {
		log.Fatal(err)
	}
	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- publish.Serve(serveCtx, s, nil) }()

	stage, err := s.Runs().AwaitEvent(ctx, id, "stage", time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stage:", string(stage))
	if err := s.Runs().Send(ctx, id, "approve", approval{By: "ana"}); err != nil {
		log.Fatal(err)
	}
	out, err := publish.Result(ctx, s, id)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(out)
	stage, err = s.Runs().GetEvent(ctx, id, "stage")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("stage:", string(stage))
	stop()
	if err := <-served; err != nil {
		log.Fatal(err)
	}
	// Output:
	// stage: "awaiting review"
	// report.pdf approved by ana
	// stage: "published"
}

// ExampleStartChild fans a run out to child runs and in again, started
// idempotently: triggering the parent a second time with the same Key
// returns the same run.
func ExampleStartChild() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "pgqrs-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	s, err := pgqrs.Open(ctx, "sqlite:"+filepath.Join(dir, "app.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if err := s.Admin().Install(ctx); err != nil {
		log.Fatal(err)
	}

	resize := pgqrs.NewWorkflow("resize", func(ctx context.Context, run *pgqrs.Run, file string) (int, error) {
		return pgqrs.Step(ctx, run, "resize", func(context.Context) (int, error) { return len(file), nil })
	})
	album := pgqrs.NewWorkflow("album", func(ctx context.Context, run *pgqrs.Run, files []string) (int, error) {
		ids := make([]int64, len(files))
		for i, f := range files {
			id, err := pgqrs.StartChild(ctx, run, "resize/"+f, resize, f)
			if err != nil {
				return 0, err
			}
			ids[i] = id
		}
		sizes, err := pgqrs.AwaitChildren[int](ctx, run, "resized", ids...) // the run waits holding no worker
		if err != nil {
			return 0, err
		}
		total := 0
		for _, n := range sizes {
			total += n
		}
		return total, nil
	})
	if err := resize.Register(ctx, s); err != nil {
		log.Fatal(err)
	}
	id, err := album.Trigger(ctx, s, []string{"a.jpg", "bb.jpg", "ccc.jpg"}, pgqrs.Key("album-7"))
	if err != nil {
		log.Fatal(err)
	}
	again, err := album.Trigger(ctx, s, []string{"a.jpg"}, pgqrs.Key("album-7"))
	fmt.Println("same run:", again == id, errors.Is(err, pgqrs.ErrDuplicate))

	serveCtx, stop := context.WithCancel(ctx)
	served := make(chan error, 2)
	go func() { served <- album.Serve(serveCtx, s, nil) }()
	go func() { served <- resize.Serve(serveCtx, s, &pgqrs.RunOptions{Concurrency: 3}) }()
	total, err := album.Result(ctx, s, id)
	if err != nil {
		log.Fatal(err)
	}
	children, err := s.Runs().List(ctx, pgqrs.RunFilter{Parent: id})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("total:", total, "children:", len(children))
	stop()
	for range 2 {
		if err := <-served; err != nil {
			log.Fatal(err)
		}
	}
	// Output:
	// same run: true true
	// total: 18 children: 3
}

// ExampleAdmin_SetLimits limits a queue to two messages in flight across
// every consumer and process: a claim of ten takes two, and another
// consumer gets nothing until one is archived.
func ExampleAdmin_SetLimits() {
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	a := s.Admin()
	if err := a.Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := a.CreateQueue(ctx, "payments"); err != nil {
		log.Fatal(err)
	}
	if err := a.SetLimits(ctx, "payments", pgqrs.Limits{MaxInFlight: 2, Rate: 100, RatePeriod: time.Second}); err != nil {
		log.Fatal(err)
	}
	p, _ := s.Producer(ctx, "payments")
	for i := range 5 {
		if _, err := p.Enqueue(ctx, map[string]int{"payment": i}); err != nil {
			log.Fatal(err)
		}
	}
	c1, _ := s.Consumer(ctx, "payments")
	c2, _ := s.Consumer(ctx, "payments")
	first, _ := c1.Dequeue(ctx, 10)
	second, _ := c2.Dequeue(ctx, 10)
	l, _ := a.Limits(ctx, "payments")
	fmt.Printf("claimed %d and %d; %s, in flight %d\n", len(first), len(second), l.Limits, l.InFlight)

	if err := c1.Archive(ctx, first[0].ID); err != nil {
		log.Fatal(err)
	}
	second, _ = c2.Dequeue(ctx, 10)
	fmt.Printf("after an archive: claimed %d\n", len(second))
	// Output:
	// claimed 2 and 0; max-in-flight=2 rate=100/1s, in flight 2
	// after an archive: claimed 1
}

// ExampleGroup runs the messages of one key group in order: the second
// message of customer 42 is claimable only once the first is archived,
// while customer 7's runs beside them.
func ExampleGroup() {
	ctx := context.Background()
	s, err := pgqrs.Open(ctx, "sqlite::memory:")
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	a := s.Admin()
	if err := a.Install(ctx); err != nil {
		log.Fatal(err)
	}
	if _, err := a.CreateQueue(ctx, "events"); err != nil {
		log.Fatal(err)
	}
	p, _ := s.Producer(ctx, "events")
	for _, e := range []struct{ customer, event string }{
		{"42", "created"}, {"42", "paid"}, {"7", "created"}, {"42", "shipped"},
	} {
		if _, err := p.Enqueue(ctx, map[string]string{"customer": e.customer, "event": e.event},
			pgqrs.Group("customer-"+e.customer)); err != nil {
			log.Fatal(err)
		}
	}
	c, _ := s.Consumer(ctx, "events")
	for {
		msgs, err := c.Dequeue(ctx, 10)
		if err != nil {
			log.Fatal(err)
		}
		if len(msgs) == 0 {
			break
		}
		var batch []string
		for _, m := range msgs {
			var v map[string]string
			_ = json.Unmarshal(m.Payload, &v)
			batch = append(batch, v["customer"]+":"+v["event"])
			if err := c.Archive(ctx, m.ID); err != nil {
				log.Fatal(err)
			}
		}
		fmt.Println(batch)
	}
	// Output:
	// [42:created 7:created]
	// [42:paid]
	// [42:shipped]
}
