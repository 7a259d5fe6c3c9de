package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pgqrs/pgqrs-go"
)

// The workflow part of the demo.
const (
	demoWorkflow      = "demo_order"
	demoWorkflowRuns  = 200
	demoWorkflowRetry = 200 * time.Millisecond // the flaky step's retry delay
)

// demoWorkflowResult is what the workflow part reports (also in --json).
type demoWorkflowResult struct {
	Workflow       string  `json:"workflow"`
	Runs           int     `json:"runs"`
	Succeeded      int     `json:"succeeded"`
	RetriedSteps   int64   `json:"retried_steps"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	LastRunID      int64   `json:"last_run_id"`
}

// demoOrder is a three-step workflow: reserve, charge (every tenth order's
// charge fails once with a transient error and is retried from the store),
// ship. retried counts the charges that failed.
func demoOrder(failedOnce *sync.Map, retried *atomic.Int64) *pgqrs.Workflow[int, string] {
	return pgqrs.NewWorkflow(demoWorkflow, func(ctx context.Context, run *pgqrs.Run, order int) (string, error) {
		slot, err := pgqrs.Step(ctx, run, "reserve", func(context.Context) (int, error) { return order % 7, nil })
		if err != nil {
			return "", err
		}
		charge, err := pgqrs.Step(ctx, run, "charge", func(context.Context) (string, error) {
			if _, again := failedOnce.LoadOrStore(order, true); order%10 == 0 && !again {
				retried.Add(1)
				return "", &pgqrs.TransientError{Err: errors.New("payment service busy"), RetryAfter: demoWorkflowRetry}
			}
			return fmt.Sprintf("ch_%d", order), nil
		})
		if err != nil {
			return "", err
		}
		return pgqrs.Step(ctx, run, "ship", func(context.Context) (string, error) {
			return fmt.Sprintf("order %d: %s, shelf %d, shipped", order, charge, slot), nil
		})
	})
}

// demoWorkflowPart triggers demoWorkflowRuns orders, serves them and waits
// for every result.
func (c *cli) demoWorkflowPart(ctx context.Context, s *pgqrs.Store) (*demoWorkflowResult, error) {
	// Runs of an earlier demo are deleted first (they have all finished).
	if err := s.Admin().DeleteWorkflow(ctx, demoWorkflow); err != nil && !errors.Is(err, pgqrs.ErrWorkflowNotFound) {
		return nil, err
	}
	var retried atomic.Int64
	var failedOnce sync.Map
	wf := demoOrder(&failedOnce, &retried)
	start := time.Now()
	if err := wf.Register(ctx, s); err != nil {
		return nil, err
	}
	c.say("\nworkflow %q: %d orders of three steps (reserve, charge, ship); every tenth charge fails once and is retried\n",
		demoWorkflow, demoWorkflowRuns)
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- wf.Serve(serveCtx, s, &pgqrs.RunOptions{Concurrency: 16, PollInterval: demoPoll, Logger: c.demoLogger()})
	}()
	ids := make([]int64, demoWorkflowRuns)
	for i := range ids {
		id, err := wf.Trigger(ctx, s, i+1)
		if err != nil {
			stop()
			return nil, errors.Join(err, <-served)
		}
		ids[i] = id
	}
	res := &demoWorkflowResult{Workflow: demoWorkflow, Runs: demoWorkflowRuns, LastRunID: ids[len(ids)-1]}
	for _, id := range ids {
		wctx, cancel := context.WithTimeout(ctx, demoStall)
		_, err := wf.Result(wctx, s, id)
		cancel()
		if err != nil {
			stop()
			return nil, errors.Join(fmt.Errorf("run %d: %w", id, err), <-served)
		}
		res.Succeeded++
	}
	stop()
	if err := <-served; err != nil {
		return nil, err
	}
	res.RetriedSteps = retried.Load()
	res.ElapsedSeconds = time.Since(start).Seconds()
	c.say("done in %.1fs: %d of %d runs succeeded, %d after a step retry scheduled in the database\n",
		res.ElapsedSeconds, res.Succeeded, res.Runs, res.RetriedSteps)
	return res, nil
}
