"""Workflows written in Python, run by the Go engine."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Generic, List, Optional, Sequence, TypeVar, Union, overload

from . import _native, errors
from .store import Seconds, Store, _int, _seconds, _str, enqueue_options, run_options, serve
from .types import RetryPolicy

T = TypeVar("T")


class Run:
    """The run a workflow body executes; its steps are persisted.

    After a crash or a suspension (a sleep, a step's retry) the body runs
    again from the top, and every step that completed returns its recorded
    result instead of running again: keep side effects and nondeterminism
    (I/O, clocks, random numbers) inside steps.
    """

    __slots__ = ("id", "workflow", "_r")

    def __init__(self, handle: int, id: int, workflow: str) -> None:
        self._r = handle
        self.id = id
        self.workflow = workflow

    def step(self, name: str, fn: Callable[[], T], *, retry: Optional[RetryPolicy] = None) -> T:
        """Run fn() once per run and record its result (any JSON value).

        Returns the recorded result, decoded from JSON (so a tuple comes back
        as a list, on the first execution as on a replay). An exception marked
        :class:`TransientError` (any exception, with
        ``RetryPolicy(retry_all_errors=True)``) schedules a retry and raises
        :class:`Suspended`, which must propagate out of the workflow body;
        any other fails the step with :class:`StepFailed`.
        """
        if not callable(fn):
            raise errors.InvalidArgument("pgqrs: invalid argument: a step needs a callable")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise errors.InvalidArgument("pgqrs: invalid argument: retry must be a pgqrs.RetryPolicy")
        reply, error_doc = _native.reply, _native.error_doc

        def call(call_id: int, doc: dict) -> int:
            try:
                out = fn()
            except BaseException as e:
                return reply(call_id, {"error": error_doc(e)})
            return reply(call_id, {"ok": out})

        t = _native.register(call)
        try:
            a = {"r": self._r, "name": _str("step name", name), "t": t}
            if retry is not None:
                a["retry"] = retry._doc()
            return _native.call("run.step", a)
        finally:
            _native.unregister(t)

    def sleep(self, name: str, seconds: Seconds) -> None:
        """Sleep durably: the first time raises :class:`Suspended` (let it
        propagate); the run continues after seconds, holding no worker."""
        _native.call("run.sleep", {"r": self._r, "name": _str("sleep name", name), "seconds": _seconds("seconds", seconds)})


Body = Callable[[Run, Any], Any]


class Workflow:
    """A named durable function of JSON input and output. Make one with :func:`workflow`."""

    def __init__(self, name: str, fn: Body, retry: Optional[RetryPolicy] = None) -> None:
        if not callable(fn):
            raise errors.InvalidArgument("pgqrs: invalid argument: a workflow needs a callable")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise errors.InvalidArgument("pgqrs: invalid argument: retry must be a pgqrs.RetryPolicy")
        self.name = _str("workflow name", name)
        self.fn = fn
        self.retry = retry
        self.__doc__ = getattr(fn, "__doc__", None)

    def __call__(self, run: Run, input: Any) -> Any:
        return self.fn(run, input)

    def register(self, store: Store) -> None:
        """Record the workflow and create its queue (idempotent)."""
        _native.call("workflow.register", {"h": store._h, "name": self.name})

    def trigger(self, store: Store, input: Any = None, **options: Any) -> int:
        """Start a run with input (any JSON value); returns the run ID.

        Options are the enqueue options: ``delay``, ``at``, ``priority``,
        ``key``, ``timeout`` (the run's deadline), ….
        """
        from .store import _payload

        data = '{"h":%d,"name":%s,"input":%s,"opts":%s}' % (
            store._h,
            _native.dumps(self.name),
            _payload(input),
            _native.dumps(enqueue_options(**options)),
        )
        return _native.call_raw(b"workflow.trigger", data.encode())

    def trigger_batch(self, store: Store, inputs: Sequence[Any], **options: Any) -> List[int]:
        from .store import _payload

        data = '{"h":%d,"name":%s,"batch":true,"inputs":[%s],"opts":%s}' % (
            store._h,
            _native.dumps(self.name),
            ",".join(_payload(i) for i in inputs),
            _native.dumps(enqueue_options(**options)),
        )
        return _native.call_raw(b"workflow.trigger", data.encode())

    def result(self, store: Store, run_id: int, timeout: Optional[Seconds] = None) -> Any:
        """Wait for the run to finish and return its output.

        Raises :class:`RunFailed` for a failed run, :class:`RunCancelled` for
        a cancelled one, :class:`Timeout` when timeout seconds pass first.
        """
        deadline = None if timeout is None else time.monotonic() + _seconds("timeout", timeout)
        while True:
            slice_ = 0.5
            if deadline is not None:
                slice_ = min(slice_, deadline - time.monotonic())
                if slice_ <= 0:
                    raise errors.Timeout(f"pgqrs: run {run_id} of {self.name!r} did not finish within {timeout}s")
            r = _native.call("workflow.result", {"h": store._h, "name": self.name, "id": _int("run ID", run_id), "timeout": slice_})
            if r["done"]:
                return r.get("output")

    def serve(self, store: Store, *, stop: Optional[threading.Event] = None, worker_name: Optional[str] = None, **options: Any) -> None:
        """Serve the workflow's runs until stop is set (or Ctrl-C), as Go's Workflow.Serve.

        The Go engine claims runs and calls the body on its threads, up to
        ``concurrency`` at a time; options as for :meth:`Consumer.run`.
        """
        fn, name = self.fn, self.name
        reply, error_doc = _native.reply, _native.error_doc

        def call(call_id: int, doc: dict) -> int:
            try:
                out = fn(Run(doc["r"], doc["id"], name), doc.get("in"))
            except BaseException as e:
                return reply(call_id, {"error": error_doc(e)})
            return reply(call_id, {"ok": out})

        t = _native.register(call)
        try:
            a = run_options(**options)
            a.update(h=store._h, name=name, t=t)
            if self.retry is not None:
                a["retry"] = self.retry._doc()
            if worker_name is not None:
                a["worker_name"] = _str("worker_name", worker_name)
            serve("workflow.serve", a, stop)
        finally:
            _native.unregister(t)


@overload
def workflow(name: Body) -> Workflow: ...


@overload
def workflow(name: Optional[str] = None, *, retry: Optional[RetryPolicy] = None) -> Callable[[Body], Workflow]: ...


def workflow(name: Union[str, Body, None] = None, *, retry: Optional[RetryPolicy] = None) -> Any:
    """Decorate fn(run, input) as a workflow named name (default: the function's name).

    ::

        @pgqrs.workflow("greet")
        def greet(run: pgqrs.Run, name: str) -> str:
            return run.step("hello", lambda: "hello, " + name)
    """
    if callable(name):
        return Workflow(name.__name__, name)

    def deco(fn: Body) -> Workflow:
        return Workflow(name if name is not None else fn.__name__, fn, retry)

    return deco
