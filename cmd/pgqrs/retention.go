package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// retentionJSON is a policy as the CLI prints it: durations as Go duration
// strings, absent when that kind is kept forever.
func retentionJSON(queue string, r pgqrs.Retention) map[string]any {
	v := map[string]any{"queue": queue}
	if r.Archived > 0 {
		v["archived"] = r.Archived.String()
	}
	if r.DeadLetters > 0 {
		v["dead_letters"] = r.DeadLetters.String()
	}
	return v
}

func keptFor(d time.Duration) string {
	if d == 0 {
		return "forever"
	}
	return d.String()
}

// queueRetentionCommand is "pgqrs queue retention NAME": without flags it
// prints the queue's policy; --archived and --dead-letters set it (what is
// not given is kept forever), --none removes it.
func queueRetentionCommand(c *cli, fs *flag.FlagSet) runFunc {
	archived := fs.Duration("archived", 0, "keep archived (done or cancelled) messages this long, e.g. 168h")
	dead := fs.Duration("dead-letters", 0, "keep dead letters this long, e.g. 720h")
	none := fs.Bool("none", false, "remove the policy: keep everything")
	return func(ctx context.Context, args []string) error {
		set := false
		fs.Visit(func(f *flag.Flag) { set = true })
		queue := args[0]
		if err := nonNegative("--archived", *archived); err != nil {
			return err
		}
		if err := nonNegative("--dead-letters", *dead); err != nil {
			return err
		}
		if *none && (*archived != 0 || *dead != 0) {
			return usagef("--none removes the policy: give it without --archived or --dead-letters")
		}
		return query(ctx, c, func(s *pgqrs.Store) (map[string]any, error) {
			if set {
				if err := s.Admin().SetRetention(ctx, queue, pgqrs.Retention{Archived: *archived, DeadLetters: *dead}); err != nil {
					return nil, err
				}
			}
			r, err := s.Admin().GetRetention(ctx, queue)
			return retentionJSON(queue, r), err
		}, func(w io.Writer, v map[string]any) error {
			r, _ := time.ParseDuration(fmt.Sprint(v["archived"]))
			d, _ := time.ParseDuration(fmt.Sprint(v["dead_letters"]))
			_, err := fmt.Fprintf(w, "queue %q keeps archived messages %s and dead letters %s\n", queue, keptFor(r), keptFor(d))
			return err
		})
	}
}

// archiveExpireCommand is "pgqrs archive expire [QUEUE]": a one-off
// retention run, for one queue or (without QUEUE) all.
func archiveExpireCommand(c *cli, fs *flag.FlagSet) runFunc {
	archived := fs.Duration("archived", 0, "delete archived (done or cancelled) messages older than this")
	dead := fs.Duration("dead-letters", 0, "delete dead letters older than this")
	return func(ctx context.Context, args []string) error {
		if err := nonNegative("--archived", *archived); err != nil {
			return err
		}
		if err := nonNegative("--dead-letters", *dead); err != nil {
			return err
		}
		if *archived == 0 && *dead == 0 {
			return usagef("give --archived, --dead-letters or both: how old is old enough to delete")
		}
		queue := ""
		if len(args) > 0 {
			queue = args[0]
		}
		return query(ctx, c, func(s *pgqrs.Store) (map[string]any, error) {
			n, d, err := s.Admin().ExpireArchive(ctx, queue, pgqrs.Retention{Archived: *archived, DeadLetters: *dead})
			v := map[string]any{"archived": n, "dead_letters": d}
			if queue != "" {
				v["queue"] = queue
			}
			return v, err
		}, func(w io.Writer, v map[string]any) error {
			where := "every queue"
			if queue != "" {
				where = fmt.Sprintf("queue %q", queue)
			}
			_, err := fmt.Fprintf(w, "deleted %d archived messages and %d dead letters of %s\n", v["archived"], v["dead_letters"], where)
			return err
		})
	}
}
