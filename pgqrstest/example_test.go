package pgqrstest_test

import (
	"context"
	"fmt"
	"os"

	"github.com/pgqrs/pgqrs-go"
	"github.com/pgqrs/pgqrs-go/pgqrstest"
)

// exampleT stands in for a test's *testing.T, so the examples can run as
// examples; in your tests pass t itself.
type exampleT struct {
	dir      string
	cleanups []func()
}

func newExampleT() *exampleT {
	dir, err := os.MkdirTemp("", "pgqrstest")
	if err != nil {
		panic(err)
	}
	return &exampleT{dir: dir}
}

func (t *exampleT) Helper()                           {}
func (t *exampleT) Fatalf(format string, args ...any) { panic(fmt.Sprintf(format, args...)) }
func (t *exampleT) Cleanup(f func())                  { t.cleanups = append(t.cleanups, f) }
func (t *exampleT) TempDir() string                   { return t.dir }
func (t *exampleT) done() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
	os.RemoveAll(t.dir)
}

// signUp is the code under test: it enqueues a welcome email.
func signUp(ctx context.Context, s *pgqrs.Store, email string) error {
	p, err := s.Producer(ctx, "emails")
	if err != nil {
		return err
	}
	defer p.Shutdown(ctx)
	_, err = p.Enqueue(ctx, map[string]string{"to": email, "template": "welcome"}, pgqrs.Header("tenant", "acme"))
	return err
}

// Assert that the code under test enqueued a message.
func ExampleRequireEnqueued() {
	t := newExampleT() // in a test: t *testing.T
	defer t.done()
	ctx := context.Background()

	s := pgqrstest.NewStore(t)
	s.Admin().CreateQueue(ctx, "emails")
	if err := signUp(ctx, s, "ada@example.com"); err != nil {
		panic(err)
	}
	m := pgqrstest.RequireEnqueued(t, s, "emails", pgqrstest.Want{
		Payload: map[string]string{"template": "welcome", "to": "ada@example.com"},
		Headers: map[string]string{"tenant": "acme"},
	})
	fmt.Println("found message", m.ID)
	// Output: found message 1
}

// Run a handler over everything enqueued, retries included, with the
// library's own Run loop.
func ExampleWork() {
	t := newExampleT()
	defer t.done()
	ctx := context.Background()

	s := pgqrstest.NewStore(t)
	s.Admin().CreateQueue(ctx, "emails")
	signUp(ctx, s, "ada@example.com")
	signUp(ctx, s, "bob@example.com")

	var sent []string
	res := pgqrstest.Work(t, s, "emails", pgqrs.HandlerFor(func(ctx context.Context, m *pgqrs.Message, e map[string]string) error {
		if m.ReadCount == 1 && e["to"] == "bob@example.com" {
			return fmt.Errorf("smtp timeout") // retried at once
		}
		sent = append(sent, e["to"])
		return nil
	}), nil)
	fmt.Println(sent, res.Calls, "calls,", res.Failures, "failure")
	// Output: [ada@example.com bob@example.com] 3 calls, 1 failure
}
