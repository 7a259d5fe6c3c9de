package main

import (
	"context"
	"errors"

	"github.com/pgqrs/pgqrs-go"
)

// errorCodes maps every sentinel of package pgqrs to the stable name the
// Python package turns into an exception class (pgqrs.<name>, a subclass of
// pgqrs.Error). Checked in order: an error wrapping several sentinels gets
// the first. errors_test.go checks that every sentinel of pgqrs.go is here.
var errorCodes = []struct {
	err  error
	code string
}{
	{pgqrs.ErrClosed, "StoreClosed"},
	{pgqrs.ErrInvalidDSN, "InvalidDSN"},
	{pgqrs.ErrDriverNotImported, "DriverNotImported"},
	{pgqrs.ErrUnreachable, "Unreachable"},
	{pgqrs.ErrAuthFailed, "AuthFailed"},
	{pgqrs.ErrInvalidName, "InvalidName"},
	{pgqrs.ErrInvalidPayload, "InvalidPayload"},
	{pgqrs.ErrPayloadTooLarge, "PayloadTooLarge"},
	{pgqrs.ErrBatchTooLarge, "BatchTooLarge"},
	{pgqrs.ErrDuplicate, "Duplicate"},
	{pgqrs.ErrQueueNotFound, "QueueNotFound"},
	{pgqrs.ErrQueueExists, "QueueExists"},
	{pgqrs.ErrQueueInUse, "QueueInUse"},
	{pgqrs.ErrMessageNotFound, "MessageNotFound"},
	{pgqrs.ErrMessageCancelled, "MessageCancelled"},
	{pgqrs.ErrLeaseLost, "LeaseLost"},
	{pgqrs.ErrWorkerNameTaken, "WorkerNameTaken"},
	{pgqrs.ErrWorkerNotFound, "WorkerNotFound"},
	{pgqrs.ErrWorkerStopped, "WorkerStopped"},
	{pgqrs.ErrWorkerSuspended, "WorkerSuspended"},
	{pgqrs.ErrInterrupted, "Interrupted"},
	{pgqrs.ErrInvalidTransition, "InvalidTransition"},
	{pgqrs.ErrWorkflowNotFound, "WorkflowNotFound"},
	{pgqrs.ErrRunNotFound, "RunNotFound"},
	{pgqrs.ErrRunFinished, "RunFinished"},
	{pgqrs.ErrRunState, "RunState"},
	{pgqrs.ErrRunCancelled, "RunCancelled"},
	{pgqrs.ErrRunFailed, "RunFailed"},
	{pgqrs.ErrSuspended, "Suspended"},
	{pgqrs.ErrDuplicateStep, "DuplicateStep"},
	{pgqrs.ErrScheduleNotFound, "ScheduleNotFound"},
	{pgqrs.ErrInvalidSchedule, "InvalidSchedule"},
	{pgqrs.ErrNondeterministic, "Nondeterministic"},
	{pgqrs.ErrSchemaNewer, "SchemaNewer"},
	{pgqrs.ErrSchema, "SchemaError"},
	{pgqrs.ErrInvalidArgument, "InvalidArgument"},
	{context.DeadlineExceeded, "Timeout"},
	{context.Canceled, "Cancelled"},
}

// Codes the C layer adds: an error of the layer itself, a panic recovered
// at the boundary, a Python step's final failure, and anything else.
const (
	codeInternal = "InternalError"
	codeStep     = "StepFailed"
	codeOther    = "Error"
)

// errorDoc is an error as Python receives it: {"error": errorDoc}.
type errorDoc struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// GoID names the original Go error inside a workflow run, so that an
	// exception Python lets propagate out of the workflow body gives the
	// engine back the very error (a suspension, a cancellation) it returned.
	GoID uint64 `json:"go,omitempty"`
	// Details of the typed errors.
	RunID    int64    `json:"run_id,omitempty"`
	Workflow string   `json:"workflow,omitempty"`
	Step     string   `json:"step,omitempty"`
	Attempts int      `json:"attempts,omitempty"`
	Problems []string `json:"problems,omitempty"`
	ID       int64    `json:"id,omitempty"` // ErrDuplicate: the key holder's message ID
}

// docOf renders err for Python.
func docOf(err error) errorDoc {
	d := errorDoc{Code: codeOther, Message: err.Error(), GoID: keptID(err)}
	var se *pgqrs.StepError
	var re *pgqrs.RunError
	var sch *pgqrs.SchemaError
	var ie *internalError
	var dup *duplicateError
	if errors.As(err, &dup) {
		d.ID = dup.id
	}
	switch {
	case errors.As(err, &ie):
		d.Code = codeInternal
		return d
	case errors.As(err, &re):
		d.RunID, d.Workflow = re.RunID, re.Workflow
	case errors.As(err, &sch):
		d.Problems = sch.Problems
	}
	if errors.As(err, &se) {
		d.Step, d.Attempts = se.Step, se.Attempts
	}
	for _, c := range errorCodes {
		if errors.Is(err, c.err) {
			d.Code = c.code
			return d
		}
	}
	if se != nil {
		d.Code = codeStep
	}
	return d
}

// internalError is a failure of the C layer itself (a recovered panic, a
// reply Python could not give).
type internalError struct{ msg string }

func (e *internalError) Error() string { return "pgqrs (python binding): " + e.msg }
