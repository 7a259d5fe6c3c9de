// Command interop is the Go side of the Python package's interop tests
// (python/tests/test_interop.py):
//
//	interop DSN enqueue QUEUE JSON      enqueue JSON, print the ID
//	interop DSN consume QUEUE           dequeue one message, archive it, print its payload
//	interop DSN workflow NAME INPUT     trigger the workflow NAME with the string INPUT, print its result
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	_ "github.com/lib/pq"
	"github.com/pgqrs/pgqrs-go"
	_ "github.com/tursodatabase/libsql-client-go/libsql"
	_ "modernc.org/sqlite"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "interop:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) < 3 {
		return fmt.Errorf("usage: interop DSN enqueue|consume|workflow ...")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := pgqrs.Open(ctx, args[0])
	if err != nil {
		return err
	}
	defer s.Close()
	switch args[1] {
	case "enqueue":
		p, err := s.Producer(ctx, args[2])
		if err != nil {
			return err
		}
		id, err := p.Enqueue(ctx, json.RawMessage(args[3]))
		if err != nil {
			return err
		}
		fmt.Println(id)
	case "consume":
		c, err := s.Consumer(ctx, args[2])
		if err != nil {
			return err
		}
		msgs, err := c.Dequeue(ctx, 1)
		if err != nil {
			return err
		}
		if len(msgs) != 1 {
			return fmt.Errorf("no message in %q", args[2])
		}
		if err := c.Archive(ctx, msgs[0].ID); err != nil {
			return err
		}
		fmt.Println(string(msgs[0].Payload))
	case "workflow":
		w := pgqrs.NewWorkflow(args[2], func(context.Context, *pgqrs.Run, string) (string, error) {
			return "", fmt.Errorf("served in Python, not here")
		})
		id, err := w.Trigger(ctx, s, args[3])
		if err != nil {
			return err
		}
		out, err := w.Result(ctx, s, id)
		if err != nil {
			return err
		}
		fmt.Println(out)
	default:
		return fmt.Errorf("unknown command %q", args[1])
	}
	return nil
}
