package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	_ "github.com/lib/pq"
	"github.com/pgqrs/pgqrs-go"
	_ "github.com/tursodatabase/libsql-client-go/libsql"
	_ "modernc.org/sqlite"
)

// op is one operation of pgqrs_call: JSON arguments in, a result to render
// as JSON out.
type op func(in []byte) (any, error)

var ops map[string]op

func init() {
	ops = map[string]op{
		"codes": func([]byte) (any, error) {
			var codes []string
			for _, c := range errorCodes {
				codes = append(codes, c.code)
			}
			return append(codes, codeInternal, codeStep, codeOther), nil
		},
		"store.open":    storeOpen,
		"store.close":   withStore(func(ctx context.Context, s *pgqrs.Store, _ []byte) (any, error) { return nil, s.Close() }),
		"store.dialect": withStore(func(ctx context.Context, s *pgqrs.Store, _ []byte) (any, error) { return s.Dialect(), nil }),
		"handle.drop": func(in []byte) (any, error) {
			var a struct{ H uint64 }
			if err := decode(in, &a); err != nil {
				return nil, err
			}
			dropHandle(a.H)
			return nil, nil
		},
	}
	for name, fn := range adminOps {
		ops["admin."+name] = withStore(fn)
	}
	for name, fn := range queueOps {
		ops[name] = fn
	}
	for name, fn := range workOps {
		ops[name] = fn
	}
	for name, fn := range feedOps {
		ops[name] = fn
	}
	for name, fn := range manageOps {
		ops[name] = fn
	}
}

// storeArgs are the arguments of every operation on a Store.
type storeArgs struct {
	H uint64 `json:"h"`
}

func withStore(fn func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error)) op {
	return func(in []byte) (any, error) {
		var a storeArgs
		if err := decode(in, &a); err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](a.H, "store")
		if err != nil {
			return nil, err
		}
		return fn(context.Background(), s, in)
	}
}

func storeOpen(in []byte) (any, error) {
	var a struct {
		DSN    string  `json:"dsn"`
		Schema *string `json:"schema"`
	}
	if err := decode(in, &a); err != nil {
		return nil, err
	}
	var opts []pgqrs.Option
	if a.Schema != nil {
		opts = append(opts, pgqrs.WithSchema(*a.Schema))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := pgqrs.Open(ctx, a.DSN, opts...)
	if err != nil {
		return nil, err
	}
	return putHandle(s), nil
}

// args decodes the operation's arguments into a fresh T.
func args[T any](in []byte) (T, error) {
	var v T
	err := decode(in, &v)
	return v, err
}

type queueArg struct {
	Queue string `json:"queue"`
}

type pageArgs struct {
	Queue    string `json:"queue"`
	Limit    int    `json:"limit"`
	BeforeID int64  `json:"before_id"`
}

var adminOps = map[string]func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error){
	"install": func(ctx context.Context, s *pgqrs.Store, _ []byte) (any, error) { return nil, s.Admin().Install(ctx) },
	"verify":  func(ctx context.Context, s *pgqrs.Store, _ []byte) (any, error) { return nil, s.Admin().Verify(ctx) },
	"create_queue": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().CreateQueue(ctx, a.Queue)
	},
	"get_queue": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().GetQueue(ctx, a.Queue)
	},
	"queues": func(ctx context.Context, s *pgqrs.Store, _ []byte) (any, error) { return s.Admin().ListQueues(ctx) },
	"delete_queue": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return nil, s.Admin().DeleteQueue(ctx, a.Queue)
	},
	"purge_queue": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().PurgeQueue(ctx, a.Queue)
	},
	"pause_queue": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return nil, s.Admin().PauseQueue(ctx, a.Queue)
	},
	"resume_queue": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return nil, s.Admin().ResumeQueue(ctx, a.Queue)
	},
	"metrics": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().QueueMetrics(ctx, a.Queue)
	},
	"all_metrics": func(ctx context.Context, s *pgqrs.Store, _ []byte) (any, error) {
		return s.Admin().AllQueueMetrics(ctx)
	},
	"system_stats": func(ctx context.Context, s *pgqrs.Store, _ []byte) (any, error) { return s.Admin().SystemStats(ctx) },
	"dead_letters": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[pageArgs](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().ListDeadLetters(ctx, a.Queue, pgqrs.ArchivePage{Limit: a.Limit, BeforeID: a.BeforeID})
	},
	"count_dead_letters": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().CountDeadLetters(ctx, a.Queue)
	},
	"replay_dead_letters": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[struct {
			Queue string   `json:"queue"`
			IDs   *[]int64 `json:"ids"`
		}](in)
		if err != nil {
			return nil, err
		}
		if a.IDs == nil {
			return s.Admin().ReplayAllDeadLetters(ctx, a.Queue)
		}
		return s.Admin().ReplayDeadLetters(ctx, a.Queue, *a.IDs)
	},
	"purge_dead_letters": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().PurgeDeadLetters(ctx, a.Queue)
	},
	"archived": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[pageArgs](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().ListArchived(ctx, a.Queue, pgqrs.ArchivePage{Limit: a.Limit, BeforeID: a.BeforeID})
	},
	"get_archived": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[struct {
			Queue string `json:"queue"`
			ID    int64  `json:"id"`
		}](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().GetArchived(ctx, a.Queue, a.ID)
	},
	"count_archived": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().CountArchived(ctx, a.Queue)
	},
	"cancel_message": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[struct {
			Queue string `json:"queue"`
			ID    int64  `json:"id"`
		}](in)
		if err != nil {
			return nil, err
		}
		return nil, s.Admin().CancelMessage(ctx, a.Queue, a.ID)
	},
	"workers": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[queueArg](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().ListWorkers(ctx, a.Queue)
	},
	"worker_health": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[struct {
			Queue      string  `json:"queue"`
			StaleAfter float64 `json:"stale_after"`
		}](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().WorkerHealth(ctx, a.Queue, seconds(a.StaleAfter))
	},
	"reclaim_stale": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[struct {
			StaleAfter float64 `json:"stale_after"`
		}](in)
		if err != nil {
			return nil, err
		}
		w, m, err := s.Admin().ReclaimStale(ctx, seconds(a.StaleAfter))
		return map[string]int64{"workers": w, "messages": m}, err
	},
	"move_to_dlq": func(ctx context.Context, s *pgqrs.Store, in []byte) (any, error) {
		a, err := args[struct {
			MaxAttempts int `json:"max_attempts"`
		}](in)
		if err != nil {
			return nil, err
		}
		return s.Admin().MoveToDLQ(ctx, a.MaxAttempts)
	},
	"workflows": func(ctx context.Context, s *pgqrs.Store, _ []byte) (any, error) { return s.Admin().ListWorkflows(ctx) },
}

// enqueueArgs are the enqueue options, as Python passes them: durations in
// seconds, times in RFC 3339.
type enqueueArgs struct {
	Delay     *float64          `json:"delay"`
	At        *time.Time        `json:"at"`
	Timeout   *float64          `json:"timeout"`
	Priority  *int              `json:"priority"`
	Headers   map[string]string `json:"headers"`
	Key       *string           `json:"key"`
	UniqueFor *float64          `json:"unique_for"`
	Group     *string           `json:"group"`
}

func (a enqueueArgs) options() []pgqrs.EnqueueOption {
	var o []pgqrs.EnqueueOption
	if a.Delay != nil {
		o = append(o, pgqrs.Delay(seconds(*a.Delay)))
	}
	if a.At != nil {
		o = append(o, pgqrs.At(*a.At))
	}
	if a.Timeout != nil {
		o = append(o, pgqrs.Timeout(seconds(*a.Timeout)))
	}
	if a.Priority != nil {
		o = append(o, pgqrs.Priority(*a.Priority))
	}
	if a.Headers != nil {
		o = append(o, pgqrs.Headers(a.Headers))
	}
	if a.Key != nil {
		o = append(o, pgqrs.Key(*a.Key))
	}
	if a.UniqueFor != nil {
		o = append(o, pgqrs.UniqueFor(seconds(*a.UniqueFor)))
	}
	if a.Group != nil {
		o = append(o, pgqrs.Group(*a.Group))
	}
	return o
}

// duplicateError is ErrDuplicate with the ID of the key's holder.
type duplicateError struct {
	err error
	id  int64
}

func (e *duplicateError) Error() string { return e.err.Error() }
func (e *duplicateError) Unwrap() error { return e.err }

type workerArgs struct {
	H     uint64  `json:"h"`
	Queue string  `json:"queue"`
	Name  *string `json:"name"`
}

func (a workerArgs) options() []pgqrs.WorkerOption {
	if a.Name == nil {
		return nil
	}
	return []pgqrs.WorkerOption{pgqrs.WithWorkerName(*a.Name)}
}

// settleArgs are a consumer's settle calls: one ID or a list.
type settleArgs struct {
	C       uint64   `json:"c"`
	ID      *int64   `json:"id"`
	IDs     *[]int64 `json:"ids"`
	Seconds float64  `json:"seconds"` // release: the delay; extend: the new lease
}

func settle(in []byte, one func(c *pgqrs.Consumer, ctx context.Context, id int64, d time.Duration) error,
	batch func(c *pgqrs.Consumer, ctx context.Context, ids []int64, d time.Duration) ([]bool, error)) (any, error) {
	a, err := args[settleArgs](in)
	if err != nil {
		return nil, err
	}
	c, err := lookup[*pgqrs.Consumer](a.C, "consumer")
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	switch {
	case a.ID != nil && a.IDs == nil:
		return nil, one(c, ctx, *a.ID, seconds(a.Seconds))
	case a.IDs != nil && a.ID == nil:
		return batch(c, ctx, *a.IDs, seconds(a.Seconds))
	}
	return nil, fmt.Errorf("%w: give one message ID or a list of them", pgqrs.ErrInvalidArgument)
}

var queueOps = map[string]op{
	"producer.new": func(in []byte) (any, error) {
		a, err := args[workerArgs](in)
		if err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](a.H, "store")
		if err != nil {
			return nil, err
		}
		p, err := s.Producer(context.Background(), a.Queue, a.options()...)
		if err != nil {
			return nil, err
		}
		return putHandle(p), nil
	},
	"producer.enqueue": func(in []byte) (any, error) {
		a, err := args[struct {
			P       uint64          `json:"p"`
			Payload json.RawMessage `json:"payload"`
			Opts    enqueueArgs     `json:"opts"`
		}](in)
		if err != nil {
			return nil, err
		}
		p, err := lookup[*pgqrs.Producer](a.P, "producer")
		if err != nil {
			return nil, err
		}
		id, err := p.Enqueue(context.Background(), a.Payload, a.Opts.options()...)
		if errors.Is(err, pgqrs.ErrDuplicate) {
			return nil, &duplicateError{err: err, id: id}
		}
		return id, err
	},
	"producer.enqueue_batch": func(in []byte) (any, error) {
		a, err := args[struct {
			P        uint64            `json:"p"`
			Payloads []json.RawMessage `json:"payloads"`
			Opts     enqueueArgs       `json:"opts"`
		}](in)
		if err != nil {
			return nil, err
		}
		p, err := lookup[*pgqrs.Producer](a.P, "producer")
		if err != nil {
			return nil, err
		}
		payloads := make([]any, len(a.Payloads))
		for i, pl := range a.Payloads {
			payloads[i] = pl
		}
		ids, err := p.EnqueueBatch(context.Background(), payloads, a.Opts.options()...)
		if errors.Is(err, pgqrs.ErrDuplicate) && len(ids) == 1 {
			return nil, &duplicateError{err: err, id: ids[0]}
		}
		return ids, err
	},
	"producer.enqueue_jobs": func(in []byte) (any, error) {
		a, err := args[struct {
			P    uint64 `json:"p"`
			Jobs []struct {
				Payload json.RawMessage `json:"payload"`
				Opts    enqueueArgs     `json:"opts"`
			} `json:"jobs"`
		}](in)
		if err != nil {
			return nil, err
		}
		p, err := lookup[*pgqrs.Producer](a.P, "producer")
		if err != nil {
			return nil, err
		}
		jobs := make([]pgqrs.Job, len(a.Jobs))
		for i, j := range a.Jobs {
			jobs[i] = pgqrs.Job{Payload: j.Payload, Options: j.Opts.options()}
		}
		return p.EnqueueJobs(context.Background(), jobs)
	},
	"producer.shutdown": func(in []byte) (any, error) {
		a, err := args[struct {
			P uint64 `json:"p"`
		}](in)
		if err != nil {
			return nil, err
		}
		p, err := lookup[*pgqrs.Producer](a.P, "producer")
		if err != nil {
			return nil, err
		}
		return nil, p.Shutdown(context.Background())
	},
	"consumer.new": func(in []byte) (any, error) {
		a, err := args[workerArgs](in)
		if err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](a.H, "store")
		if err != nil {
			return nil, err
		}
		c, err := s.Consumer(context.Background(), a.Queue, a.options()...)
		if err != nil {
			return nil, err
		}
		return putHandle(c), nil
	},
	"consumer.dequeue": func(in []byte) (any, error) {
		a, err := args[struct {
			C                 uint64   `json:"c"`
			N                 int      `json:"n"`
			VisibilityTimeout *float64 `json:"visibility_timeout"`
			MaxAttempts       *int     `json:"max_attempts"`
		}](in)
		if err != nil {
			return nil, err
		}
		c, err := lookup[*pgqrs.Consumer](a.C, "consumer")
		if err != nil {
			return nil, err
		}
		var o []pgqrs.DequeueOption
		if a.VisibilityTimeout != nil {
			o = append(o, pgqrs.VisibilityTimeout(seconds(*a.VisibilityTimeout)))
		}
		if a.MaxAttempts != nil {
			o = append(o, pgqrs.MaxAttempts(*a.MaxAttempts))
		}
		msgs, err := c.Dequeue(context.Background(), a.N, o...)
		if msgs == nil {
			msgs = []*pgqrs.Message{}
		}
		return msgs, err
	},
	"consumer.archive": func(in []byte) (any, error) {
		return settle(in, func(c *pgqrs.Consumer, ctx context.Context, id int64, _ time.Duration) error {
			return c.Archive(ctx, id)
		},
			func(c *pgqrs.Consumer, ctx context.Context, ids []int64, _ time.Duration) ([]bool, error) {
				return c.ArchiveBatch(ctx, ids)
			})
	},
	"consumer.delete": func(in []byte) (any, error) {
		return settle(in, func(c *pgqrs.Consumer, ctx context.Context, id int64, _ time.Duration) error {
			return c.Delete(ctx, id)
		},
			func(c *pgqrs.Consumer, ctx context.Context, ids []int64, _ time.Duration) ([]bool, error) {
				return c.DeleteBatch(ctx, ids)
			})
	},
	"consumer.release": func(in []byte) (any, error) {
		return settle(in, (*pgqrs.Consumer).Release, (*pgqrs.Consumer).ReleaseBatch)
	},
	"consumer.extend": func(in []byte) (any, error) {
		return settle(in, (*pgqrs.Consumer).ExtendVisibility, (*pgqrs.Consumer).ExtendVisibilityBatch)
	},
	"consumer.held": func(in []byte) (any, error) {
		a, err := args[struct {
			C uint64 `json:"c"`
		}](in)
		if err != nil {
			return nil, err
		}
		c, err := lookup[*pgqrs.Consumer](a.C, "consumer")
		if err != nil {
			return nil, err
		}
		return c.Held(context.Background())
	},
	"consumer.shutdown": func(in []byte) (any, error) {
		a, err := args[struct {
			C uint64 `json:"c"`
		}](in)
		if err != nil {
			return nil, err
		}
		c, err := lookup[*pgqrs.Consumer](a.C, "consumer")
		if err != nil {
			return nil, err
		}
		return nil, c.Shutdown(context.Background())
	},
}
