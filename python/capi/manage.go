package main

import (
	"context"
	"encoding/json"

	"github.com/pgqrs/pgqrs-go"
)

// Operations on a store's settings: flow limits, retention, counters and
// schedules. Each decodes its arguments into A and calls one method.

// storeOp is an operation on the store with handle "h" whose other
// arguments decode into A.
func storeOp[A any](f func(ctx context.Context, s *pgqrs.Store, a A) (any, error)) op {
	return func(in []byte) (any, error) {
		h, err := args[storeArgs](in)
		if err != nil {
			return nil, err
		}
		a, err := args[A](in)
		if err != nil {
			return nil, err
		}
		s, err := lookup[*pgqrs.Store](h.H, "store")
		if err != nil {
			return nil, err
		}
		return f(context.Background(), s, a)
	}
}

type none struct{}

type nameArg struct {
	Name string `json:"name"`
}

// limitsArgs are Limits as Python passes them: the period in seconds.
type limitsArgs struct {
	Queue       string  `json:"queue"`
	MaxInFlight int     `json:"max_in_flight"`
	PerGroup    int     `json:"per_group"`
	Rate        int     `json:"rate"`
	RatePeriod  float64 `json:"rate_period"`
}

// scheduleArgs are a Schedule as Python passes it.
type scheduleArgs struct {
	Name     string            `json:"name"`
	Cron     string            `json:"cron"`
	TimeZone string            `json:"timezone"`
	Queue    string            `json:"queue"`
	Workflow string            `json:"workflow"`
	Payload  json.RawMessage   `json:"payload"`
	Priority int               `json:"priority"`
	Headers  map[string]string `json:"headers"`
}

var manageOps = map[string]op{
	"admin.set_limits": storeOp(func(ctx context.Context, s *pgqrs.Store, a limitsArgs) (any, error) {
		return nil, s.Admin().SetLimits(ctx, a.Queue, pgqrs.Limits{
			MaxInFlight: a.MaxInFlight, PerGroup: a.PerGroup, Rate: a.Rate, RatePeriod: seconds(a.RatePeriod),
		})
	}),
	"admin.limits": storeOp(func(ctx context.Context, s *pgqrs.Store, a queueArg) (any, error) {
		l, err := s.Admin().Limits(ctx, a.Queue)
		if err != nil {
			return nil, err
		}
		return map[string]any{
			"max_in_flight": l.MaxInFlight, "per_group": l.PerGroup, "rate": l.Rate,
			"rate_period": l.RatePeriod.Seconds(), "in_flight": l.InFlight,
		}, nil
	}),
	"admin.set_retention": storeOp(func(ctx context.Context, s *pgqrs.Store, a struct {
		Queue       string  `json:"queue"`
		Archived    float64 `json:"archived"`
		DeadLetters float64 `json:"dead_letters"`
	}) (any, error) {
		return nil, s.Admin().SetRetention(ctx, a.Queue, pgqrs.Retention{Archived: seconds(a.Archived), DeadLetters: seconds(a.DeadLetters)})
	}),
	"admin.retention": storeOp(func(ctx context.Context, s *pgqrs.Store, a queueArg) (any, error) {
		r, err := s.Admin().GetRetention(ctx, a.Queue)
		if err != nil {
			return nil, err
		}
		return map[string]float64{"archived": r.Archived.Seconds(), "dead_letters": r.DeadLetters.Seconds()}, nil
	}),
	"admin.recount": storeOp(func(ctx context.Context, s *pgqrs.Store, _ none) (any, error) {
		return nil, s.Admin().Recount(ctx)
	}),
	"schedules.add": storeOp(func(ctx context.Context, s *pgqrs.Store, a scheduleArgs) (any, error) {
		var payload any
		if len(a.Payload) > 0 {
			payload = a.Payload
		}
		return s.Schedules().Add(ctx, pgqrs.Schedule{
			Name: a.Name, Cron: a.Cron, TimeZone: a.TimeZone, Queue: a.Queue, Workflow: a.Workflow,
			Payload: payload, Priority: a.Priority, Headers: a.Headers,
		})
	}),
	"schedules.get": storeOp(func(ctx context.Context, s *pgqrs.Store, a nameArg) (any, error) {
		return s.Schedules().Get(ctx, a.Name)
	}),
	"schedules.list": storeOp(func(ctx context.Context, s *pgqrs.Store, _ none) (any, error) {
		return s.Schedules().List(ctx)
	}),
	"schedules.pause": storeOp(func(ctx context.Context, s *pgqrs.Store, a nameArg) (any, error) {
		return nil, s.Schedules().Pause(ctx, a.Name)
	}),
	"schedules.resume": storeOp(func(ctx context.Context, s *pgqrs.Store, a nameArg) (any, error) {
		return nil, s.Schedules().Resume(ctx, a.Name)
	}),
	"schedules.delete": storeOp(func(ctx context.Context, s *pgqrs.Store, a nameArg) (any, error) {
		return nil, s.Schedules().Delete(ctx, a.Name)
	}),
	"schedules.trigger": storeOp(func(ctx context.Context, s *pgqrs.Store, a nameArg) (any, error) {
		return s.Schedules().Trigger(ctx, a.Name)
	}),
}
