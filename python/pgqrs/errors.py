"""Exceptions raised by pgqrs.

Every error the Go engine returns maps to one class here, named after the Go
sentinel (``ErrQueueNotFound`` → :class:`QueueNotFound`); all are subclasses
of :class:`Error`. Bad arguments raise :class:`InvalidArgument` (also a
:class:`ValueError`), payloads that do not encode as JSON
:class:`InvalidPayload`.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Type


class Error(Exception):
    """Base class of every pgqrs error.

    ``code`` is the stable error name (the class name), ``message`` the Go
    engine's text.
    """

    code = "Error"

    def __init__(self, message: str = "", **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self._go_id: int = details.pop("go", 0) or 0
        for k, v in details.items():
            setattr(self, k, v)


def _cls(name: str, doc: str, *bases: type) -> Type[Error]:
    cls = type(name, (bases or (Error,)), {"__doc__": doc, "code": name})
    globals()[name] = cls
    return cls


class InvalidArgument(Error, ValueError):
    """An argument out of range or of the wrong type."""

    code = "InvalidArgument"


class InvalidPayload(Error, ValueError):
    """A payload, workflow input or output that is not JSON (or holds a NUL)."""

    code = "InvalidPayload"


class InvalidName(InvalidArgument):
    """A queue, worker, workflow or schema name outside the allowed set."""

    code = "InvalidName"


class InvalidDSN(Error, ValueError):
    """A DSN that cannot be read or names no supported backend."""

    code = "InvalidDSN"


class Duplicate(Error):
    """A message with this key already exists; ``id`` is the holder's ID."""

    code = "Duplicate"
    id: int = 0


class RunFailed(Error):
    """A workflow run ended in ERROR; ``run_id`` and ``workflow`` say which."""

    code = "RunFailed"
    run_id: int = 0
    workflow: str = ""


class SchemaError(Error):
    """Admin.verify found problems (``problems``)."""

    code = "SchemaError"
    problems: list = []


class StepFailed(Error):
    """A step's final failure; ``step`` and ``attempts`` say which and how often."""

    code = "StepFailed"
    step: str = ""
    attempts: int = 0


StoreClosed = _cls("StoreClosed", "The store was closed.")
DriverNotImported = _cls("DriverNotImported", "The database driver is missing.")
Unreachable = _cls("Unreachable", "The database did not answer.")
AuthFailed = _cls("AuthFailed", "The database refused the credentials.")
PayloadTooLarge = _cls("PayloadTooLarge", "A payload above the store's limit.", InvalidPayload)
BatchTooLarge = _cls("BatchTooLarge", "A batch above the store's limit.", InvalidArgument)
QueueNotFound = _cls("QueueNotFound", "No queue has this name.")
QueueExists = _cls("QueueExists", "The queue name is taken.")
QueueInUse = _cls("QueueInUse", "The queue still has messages, dead letters or workers.")
MessageNotFound = _cls("MessageNotFound", "No live message has this ID in the queue.")
MessageCancelled = _cls("MessageCancelled", "An admin cancelled the message.")
LeaseLost = _cls("LeaseLost", "The consumer no longer holds the message's lease.")
WorkerNameTaken = _cls("WorkerNameTaken", "A live worker already has this name.")
WorkerNotFound = _cls("WorkerNotFound", "No worker has this ID.")
WorkerStopped = _cls("WorkerStopped", "The worker was shut down.")
WorkerSuspended = _cls("WorkerSuspended", "The worker is suspended or interrupted.")
Interrupted = _cls("Interrupted", "An admin interrupted the worker.")
InvalidTransition = _cls("InvalidTransition", "A worker state change its state does not allow.")
WorkflowNotFound = _cls("WorkflowNotFound", "The workflow is not registered.")
RunNotFound = _cls("RunNotFound", "No run has this ID.")
RunFinished = _cls("RunFinished", "The run already finished.")
RunState = _cls("RunState", "The run is not in a state that allows this.")
RunCancelled = _cls("RunCancelled", "The run was cancelled.")
Suspended = _cls(
    "Suspended",
    "The run waits (a sleep, a step's retry, a pause): let it propagate out of the workflow body.",
)
DuplicateStep = _cls("DuplicateStep", "A step name used twice in one run.")
ScheduleNotFound = _cls("ScheduleNotFound", "No schedule has this name.")
InvalidSchedule = _cls("InvalidSchedule", "A schedule definition that cannot be used.")
Nondeterministic = _cls("Nondeterministic", "A replay left the recorded path of steps.")
SchemaNewer = _cls("SchemaNewer", "The database schema is newer than this pgqrs.")
Timeout = _cls("Timeout", "The operation's deadline passed.")
Cancelled = _cls("Cancelled", "The operation was cancelled.")
InternalError = _cls("InternalError", "A failure of the Python binding itself (a bug: please report it).")


class PermanentError(Exception):
    """Raise (or raise from) this in a handler or step for an error no retry fixes.

    A handler's message is dead-lettered at once; a step fails without retries.
    """


class TransientError(Exception):
    """Raise this in a step for an error worth retrying under the step's retry policy.

    ``retry_after`` (seconds), if given, replaces the policy's backoff for this retry.
    """

    def __init__(self, message: str = "", retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


_BY_CODE: Dict[str, Type[Error]] = {
    c.code: c for c in list(globals().values()) if isinstance(c, type) and issubclass(c, Error)
}


def from_doc(doc: Dict[str, Any]) -> Error:
    """The exception for an error document of the Go engine."""
    doc = dict(doc)
    code = doc.pop("code", "Error")
    message = doc.pop("message", "")
    cls = _BY_CODE.get(code, Error)
    return cls(message, **doc)


def known_codes() -> set:
    return set(_BY_CODE)
