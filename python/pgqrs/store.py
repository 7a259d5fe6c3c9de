"""Store, Admin, Producer, Consumer and Runs: the queue API over the Go engine."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

from . import _native, errors
from .types import (
    ArchivedMessage,
    Enqueued,
    Message,
    Queue,
    QueueLimits,
    QueueMetrics,
    RunInfo,
    ScheduleInfo,
    SystemStats,
    WorkerHealth,
    WorkerInfo,
    WorkflowInfo,
    _build,
    backoff_doc,
)

Seconds = Union[int, float, timedelta]


def _seconds(name: str, v: Seconds) -> float:
    if isinstance(v, timedelta):
        return v.total_seconds()
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise errors.InvalidArgument(f"pgqrs: invalid argument: {name} must be seconds or a timedelta, not {type(v).__name__}")
    return float(v)


def _str(name: str, v: Any) -> str:
    if not isinstance(v, str):
        raise errors.InvalidArgument(f"pgqrs: invalid argument: {name} must be a string, not {type(v).__name__}")
    return v


def _int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise errors.InvalidArgument(f"pgqrs: invalid argument: {name} must be an integer, not {type(v).__name__}")
    return v


def _ids(v: Any) -> Dict[str, Any]:
    """{"id": n} for one message (an ID or a Message), {"ids": [...]} for several."""
    if isinstance(v, Message):
        return {"id": v.id}
    if isinstance(v, int) and not isinstance(v, bool):
        return {"id": v}
    if isinstance(v, (list, tuple)):
        return {"ids": [m.id if isinstance(m, Message) else _int("message ID", m) for m in v]}
    raise errors.InvalidArgument(
        f"pgqrs: invalid argument: want a message ID, a Message or a list of them, not {type(v).__name__}"
    )


def _payload(v: Any) -> str:
    try:
        return _native.dumps(v)
    except (TypeError, ValueError) as e:
        raise errors.InvalidPayload(f"pgqrs: invalid payload: {e}") from None


def enqueue_options(
    delay: Optional[Seconds] = None,
    at: Optional[datetime] = None,
    timeout: Optional[Seconds] = None,
    priority: Optional[int] = None,
    headers: Optional[Mapping[str, str]] = None,
    key: Optional[str] = None,
    unique_for: Optional[Seconds] = None,
    group: Optional[str] = None,
) -> Dict[str, Any]:
    o: Dict[str, Any] = {}
    if delay is not None:
        o["delay"] = _seconds("delay", delay)
    if at is not None:
        if not isinstance(at, datetime):
            raise errors.InvalidArgument(f"pgqrs: invalid argument: at must be a datetime, not {type(at).__name__}")
        if at.tzinfo is None:
            at = at.astimezone()  # a naive datetime is local time
        o["at"] = at.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if timeout is not None:
        o["timeout"] = _seconds("timeout", timeout)
    if priority is not None:
        o["priority"] = _int("priority", priority)
    if headers is not None:
        if not isinstance(headers, Mapping):
            raise errors.InvalidArgument("pgqrs: invalid argument: headers must be a dict of strings")
        o["headers"] = {_str("header name", k): _str("header value", v) for k, v in headers.items()}
    if key is not None:
        o["key"] = _str("key", key)
    if unique_for is not None:
        o["unique_for"] = _seconds("unique_for", unique_for)
    if group is not None:
        o["group"] = _str("group", group)
    return o


def run_options(
    concurrency: int = 1,
    batch_size: int = 10,
    visibility_timeout: Optional[Seconds] = None,
    poll_interval: Optional[Seconds] = None,
    max_attempts: Optional[int] = None,
    backoff: Any = None,
    heartbeat_interval: Optional[Seconds] = None,
    reclaim_after: Optional[Seconds] = None,
    shutdown_timeout: Optional[Seconds] = None,
    scheduler: bool = False,
) -> Dict[str, Any]:
    o: Dict[str, Any] = {"concurrency": _int("concurrency", concurrency), "batch_size": _int("batch_size", batch_size)}
    for name, v in (
        ("visibility_timeout", visibility_timeout),
        ("poll_interval", poll_interval),
        ("heartbeat_interval", heartbeat_interval),
        ("reclaim_after", reclaim_after),
        ("shutdown_timeout", shutdown_timeout),
    ):
        if v is not None:
            o[name] = _seconds(name, v)
    if max_attempts is not None:
        o["max_attempts"] = _int("max_attempts", max_attempts)
    if backoff is not None:
        o["backoff"] = backoff_doc(backoff)
    if scheduler:
        o["scheduler"] = True
    return o


def serve(
    op: str,
    args: Dict[str, Any],
    stop: Optional[threading.Event],
    work: Optional[Callable[[int], None]] = None,
    threads: int = 0,
) -> None:
    """Start a Go run loop and wait for it; stop it gracefully on stop or Ctrl-C.

    The wait happens in short slices, so that the main thread sees
    KeyboardInterrupt and stop promptly. After a Ctrl-C the loop shuts down
    gracefully (running handlers finish and are settled) and KeyboardInterrupt
    is raised again. With work, threads Python threads run work(job) while
    the loop runs: they take its messages until it ends.
    """
    if stop is not None and not isinstance(stop, threading.Event):
        raise errors.InvalidArgument("pgqrs: invalid argument: stop must be a threading.Event")
    j = _native.call(op, args)
    _native.job_started(j)
    workers = [threading.Thread(target=work, args=(j,), name=f"pgqrs-handler-{i}", daemon=True) for i in range(threads if work else 0)]
    for w in workers:
        w.start()
    interrupted = False
    done = False
    try:
        try:
            while not (stop is not None and stop.is_set()):
                if _native.call("job.wait", {"j": j, "timeout": 0.05}):
                    done = True
                    return
        except KeyboardInterrupt:
            interrupted = True
        if not done:
            _native.call("job.stop", {"j": j})
            while True:
                try:
                    if _native.call("job.wait", {"j": j, "timeout": 0.2}):
                        done = True
                        break
                except KeyboardInterrupt:
                    interrupted = True  # keep waiting for the graceful end
    finally:
        if not done:
            try:
                _native.call("job.stop", {"j": j})
            except errors.Error:
                pass
        if workers and done:
            for w in workers:
                w.join()
            _native.call("job.release", {"j": j})
        _native.job_ended(j)
    if interrupted:
        raise KeyboardInterrupt


class Store:
    """A handle on pgqrs's tables in one database; make one per database and share it.

    Use :func:`pgqrs.open`. A Store is a context manager: leaving the block closes it.
    """

    def __init__(self, handle: int, dsn_shown: str = "") -> None:
        self._h = handle
        self.admin = Admin(self)
        self.runs = Runs(self)
        self.schedules = Schedules(self)

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the store; later calls raise :class:`pgqrs.StoreClosed`."""
        _native.call("store.close", {"h": self._h})

    @property
    def dialect(self) -> str:
        """"postgres", "sqlite" or "turso"."""
        return _native.call("store.dialect", {"h": self._h})

    def producer(self, queue: str, name: Optional[str] = None) -> "Producer":
        """A producer (a registered worker) for queue."""
        a: Dict[str, Any] = {"h": self._h, "queue": _str("queue", queue)}
        if name is not None:
            a["name"] = _str("name", name)
        return Producer(_native.call("producer.new", a), queue)

    def consumer(self, queue: str, name: Optional[str] = None) -> "Consumer":
        """A consumer (a registered worker) for queue."""
        a: Dict[str, Any] = {"h": self._h, "queue": _str("queue", queue)}
        if name is not None:
            a["name"] = _str("name", name)
        return Consumer(_native.call("consumer.new", a), queue)


def open(dsn: str, schema: Optional[str] = None) -> Store:  # noqa: A001 - the package's verb
    """Open a store on dsn and check that the database answers.

    DSNs: ``postgres://user:pass@host/db``, ``sqlite:path/app.db``,
    ``sqlite::memory:``, ``http://host:port`` or ``libsql://host?authToken=…``
    (Turso). ``schema`` places the tables in a PostgreSQL schema. Raises
    :class:`InvalidDSN`, :class:`Unreachable` or :class:`AuthFailed`.
    """
    a: Dict[str, Any] = {"dsn": _str("dsn", dsn)}
    if schema is not None:
        a["schema"] = _str("schema", schema)
    return Store(_native.call("store.open", a))


class Admin:
    """Schema, queues, metrics, dead letters, archive and workers."""

    def __init__(self, store: Store) -> None:
        self._s = store

    def _call(self, op: str, **kw: Any) -> Any:
        kw["h"] = self._s._h
        return _native.call("admin." + op, kw)

    def install(self) -> None:
        """Create or upgrade pgqrs's tables (idempotent)."""
        self._call("install")

    def verify(self) -> None:
        """Check the schema; raises :class:`SchemaError` listing ``problems``."""
        self._call("verify")

    def create_queue(self, name: str) -> Queue:
        return _build(Queue, self._call("create_queue", queue=_str("name", name)))

    def get_queue(self, name: str) -> Queue:
        return _build(Queue, self._call("get_queue", queue=_str("name", name)))

    def queues(self) -> List[Queue]:
        return [_build(Queue, q) for q in self._call("queues") or []]

    def delete_queue(self, name: str) -> None:
        self._call("delete_queue", queue=_str("name", name))

    def purge_queue(self, name: str) -> int:
        """Delete the queue's live messages; returns how many."""
        return self._call("purge_queue", queue=_str("name", name))

    def pause_queue(self, name: str) -> None:
        self._call("pause_queue", queue=_str("name", name))

    def resume_queue(self, name: str) -> None:
        self._call("resume_queue", queue=_str("name", name))

    def metrics(self, queue: Optional[str] = None) -> Union[QueueMetrics, List[QueueMetrics]]:
        """One queue's metrics, or every queue's when queue is None."""
        if queue is None:
            return [_build(QueueMetrics, m) for m in self._call("all_metrics") or []]
        return _build(QueueMetrics, self._call("metrics", queue=_str("queue", queue)))

    def system_stats(self) -> SystemStats:
        return _build(SystemStats, self._call("system_stats"))

    def dead_letters(self, queue: str, limit: int = 100, before_id: int = 0) -> List[ArchivedMessage]:
        """Dead letters, newest first; page with before_id."""
        docs = self._call("dead_letters", queue=_str("queue", queue), limit=_int("limit", limit), before_id=_int("before_id", before_id))
        return [_build(ArchivedMessage, d) for d in docs or []]

    def count_dead_letters(self, queue: str) -> int:
        return self._call("count_dead_letters", queue=_str("queue", queue))

    def replay_dead_letters(self, queue: str, ids: Optional[Iterable[int]] = None) -> int:
        """Put dead letters back in the queue (all when ids is None); returns how many."""
        if ids is None:
            return self._call("replay_dead_letters", queue=_str("queue", queue))
        return self._call("replay_dead_letters", queue=_str("queue", queue), ids=[_int("id", i) for i in ids])

    def purge_dead_letters(self, queue: str) -> int:
        return self._call("purge_dead_letters", queue=_str("queue", queue))

    def archived(self, queue: str, limit: int = 100, before_id: int = 0) -> List[ArchivedMessage]:
        """Archived messages (dead letters included), newest first."""
        docs = self._call("archived", queue=_str("queue", queue), limit=_int("limit", limit), before_id=_int("before_id", before_id))
        return [_build(ArchivedMessage, d) for d in docs or []]

    def get_archived(self, queue: str, id: int) -> ArchivedMessage:
        return _build(ArchivedMessage, self._call("get_archived", queue=_str("queue", queue), id=_int("id", id)))

    def count_archived(self, queue: str) -> int:
        return self._call("count_archived", queue=_str("queue", queue))

    def cancel_message(self, queue: str, id: int) -> None:
        """Take a pending, delayed or leased message out of the queue (archived, cancelled)."""
        self._call("cancel_message", queue=_str("queue", queue), id=_int("id", id))

    def move_to_dlq(self, max_attempts: int) -> int:
        return self._call("move_to_dlq", max_attempts=_int("max_attempts", max_attempts))

    def workers(self, queue: str = "") -> List[WorkerInfo]:
        return [_build(WorkerInfo, w) for w in self._call("workers", queue=_str("queue", queue)) or []]

    def worker_health(self, queue: str = "", stale_after: Seconds = 60) -> WorkerHealth:
        return _build(WorkerHealth, self._call("worker_health", queue=_str("queue", queue), stale_after=_seconds("stale_after", stale_after)))

    def reclaim_stale(self, stale_after: Seconds = 60) -> Dict[str, int]:
        """Stop workers silent for stale_after and release their messages: {"workers": n, "messages": m}."""
        return self._call("reclaim_stale", stale_after=_seconds("stale_after", stale_after))

    def workflows(self) -> List[WorkflowInfo]:
        return [_build(WorkflowInfo, w) for w in self._call("workflows") or []]

    def set_limits(
        self,
        queue: str,
        *,
        max_in_flight: int = 0,
        per_group: int = 0,
        rate: int = 0,
        rate_period: Optional[Seconds] = None,
    ) -> None:
        """Replace the queue's flow-control settings; all zero (the default) clears them.

        ``max_in_flight``: at most this many of its messages leased at once,
        across every consumer. ``per_group``: at most this many of one group.
        ``rate`` per ``rate_period``: at most this many claims per period.
        """
        a: Dict[str, Any] = {
            "queue": _str("queue", queue),
            "max_in_flight": _int("max_in_flight", max_in_flight),
            "per_group": _int("per_group", per_group),
            "rate": _int("rate", rate),
        }
        if rate_period is not None:
            a["rate_period"] = _seconds("rate_period", rate_period)
        self._call("set_limits", **a)

    def limits(self, queue: str) -> QueueLimits:
        """The queue's flow-control settings and how many limited leases it holds now."""
        return _build(QueueLimits, self._call("limits", queue=_str("queue", queue)))

    def set_retention(self, queue: str, *, archived: Optional[Seconds] = None, dead_letters: Optional[Seconds] = None) -> None:
        """Keep the queue's archived messages and dead letters this long (None: forever)."""
        a: Dict[str, Any] = {"queue": _str("queue", queue)}
        if archived is not None:
            a["archived"] = _seconds("archived", archived)
        if dead_letters is not None:
            a["dead_letters"] = _seconds("dead_letters", dead_letters)
        self._call("set_retention", **a)

    def retention(self, queue: str) -> Dict[str, float]:
        """The queue's retention in seconds: {"archived": s, "dead_letters": s}, 0 = forever."""
        return self._call("retention", queue=_str("queue", queue))

    def recount(self) -> None:
        """Rebuild the metrics counters from the rows (PostgreSQL; nothing elsewhere)."""
        self._call("recount")


class Schedules:
    """Periodic schedules kept in the store; any Run loop with ``scheduler=True`` fires them."""

    def __init__(self, store: "Store") -> None:
        self._s = store

    def _call(self, op: str, **kw: Any) -> Any:
        kw["h"] = self._s._h
        return _native.call("schedules." + op, kw)

    def add(
        self,
        name: str,
        cron: str,
        *,
        queue: Optional[str] = None,
        workflow: Optional[str] = None,
        payload: Any = None,
        timezone: str = "UTC",
        priority: int = 0,
        headers: Optional[Mapping[str, str]] = None,
    ) -> ScheduleInfo:
        """Create or replace schedule name: at each cron occurrence enqueue payload to
        queue, or start a run of workflow with payload as its input (exactly one)."""
        a: Dict[str, Any] = {
            "name": _str("name", name),
            "cron": _str("cron", cron),
            "timezone": _str("timezone", timezone),
            "priority": _int("priority", priority),
            "payload": payload,
        }
        if queue is not None:
            a["queue"] = _str("queue", queue)
        if workflow is not None:
            a["workflow"] = _str("workflow", workflow)
        if headers is not None:
            a["headers"] = dict(headers)
        return _build(ScheduleInfo, self._call("add", **a))

    def get(self, name: str) -> ScheduleInfo:
        return _build(ScheduleInfo, self._call("get", name=_str("name", name)))

    def list(self) -> List[ScheduleInfo]:
        return [_build(ScheduleInfo, d) for d in self._call("list") or []]

    def pause(self, name: str) -> None:
        self._call("pause", name=_str("name", name))

    def resume(self, name: str) -> None:
        self._call("resume", name=_str("name", name))

    def delete(self, name: str) -> None:
        self._call("delete", name=_str("name", name))

    def trigger(self, name: str) -> int:
        """Fire the schedule now, whatever its timing; returns the message or run ID."""
        return self._call("trigger", name=_str("name", name))


class _Worker:
    def __init__(self, handle: int, queue: str) -> None:
        self._h = handle
        self.queue = queue

    def __enter__(self):  # type: ignore[no-untyped-def]
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Shut the worker down (marks it stopped) and release its handle."""
        try:
            self.shutdown()
        except (errors.WorkerStopped, errors.StoreClosed):
            pass
        finally:
            _native.call("handle.drop", {"h": self._h})

    def shutdown(self) -> None:
        raise NotImplementedError


class Producer(_Worker):
    """Adds messages to one queue. Make one with :meth:`Store.producer`."""

    def shutdown(self) -> None:
        _native.call("producer.shutdown", {"p": self._h})

    def enqueue(self, payload: Any, **options: Any) -> int:
        """Enqueue payload (any JSON value); returns the message ID.

        Options: ``delay`` (seconds or timedelta), ``at`` (datetime),
        ``priority`` (0 most urgent to 9), ``key`` (at most one live message
        per key: a duplicate raises :class:`Duplicate` with the holder's
        ``id``), ``unique_for``, ``headers`` (dict of str), ``group`` (flow
        control key group), ``timeout`` (a workflow run's deadline).
        """
        o = _native.dumps(enqueue_options(**options))
        data = '{"p":%d,"payload":%s,"opts":%s}' % (self._h, _payload(payload), o)
        return _native.call_raw(b"producer.enqueue", data.encode())

    def enqueue_batch(self, payloads: Sequence[Any], **options: Any) -> List[int]:
        """Enqueue several payloads with the same options in one statement; returns their IDs."""
        if isinstance(payloads, (str, bytes)) or not isinstance(payloads, Sequence):
            raise errors.InvalidArgument("pgqrs: invalid argument: payloads must be a list")
        o = _native.dumps(enqueue_options(**options))
        data = '{"p":%d,"payloads":[%s],"opts":%s}' % (self._h, ",".join(_payload(p) for p in payloads), o)
        return _native.call_raw(b"producer.enqueue_batch", data.encode())

    def enqueue_jobs(self, jobs: Sequence[Mapping[str, Any]]) -> List[Enqueued]:
        """Enqueue jobs, each {"payload": ..., **options}; one :class:`Enqueued` per job."""
        docs = []
        for j in jobs:
            j = dict(j)
            if "payload" not in j:
                raise errors.InvalidArgument("pgqrs: invalid argument: each job needs a payload")
            p = _payload(j.pop("payload"))
            docs.append('{"payload":%s,"opts":%s}' % (p, _native.dumps(enqueue_options(**j))))
        data = '{"p":%d,"jobs":[%s]}' % (self._h, ",".join(docs))
        return [_build(Enqueued, e) for e in _native.call_raw(b"producer.enqueue_jobs", data.encode())]


Handler = Callable[[Message], Any]


class Consumer(_Worker):
    """Claims and settles the messages of one queue. Make one with :meth:`Store.consumer`."""

    def shutdown(self) -> None:
        _native.call("consumer.shutdown", {"c": self._h})

    def dequeue(self, n: int = 1, visibility_timeout: Optional[Seconds] = None, max_attempts: Optional[int] = None) -> List[Message]:
        """Claim up to n visible messages, leased for visibility_timeout seconds."""
        a: Dict[str, Any] = {"c": self._h, "n": _int("n", n)}
        if visibility_timeout is not None:
            a["visibility_timeout"] = _seconds("visibility_timeout", visibility_timeout)
        if max_attempts is not None:
            a["max_attempts"] = _int("max_attempts", max_attempts)
        return [Message(d) for d in _native.call("consumer.dequeue", a)]

    def _settle(self, op: str, m: Any, **kw: Any) -> Any:
        a = _ids(m)
        a.update(kw, c=self._h)
        return _native.call(op, a)

    def archive(self, m: Union[int, Message, Sequence[Union[int, Message]]]) -> Optional[List[bool]]:
        """Archive a message held by this consumer (raises :class:`LeaseLost`,
        :class:`MessageNotFound`); for a list, returns which were archived."""
        return self._settle("consumer.archive", m)

    def delete(self, m: Union[int, Message, Sequence[Union[int, Message]]]) -> Optional[List[bool]]:
        return self._settle("consumer.delete", m)

    def release(self, m: Union[int, Message, Sequence[Union[int, Message]]], delay: Seconds = 0) -> Optional[List[bool]]:
        """Give a message back, visible again after delay seconds."""
        return self._settle("consumer.release", m, seconds=_seconds("delay", delay))

    def extend(self, m: Union[int, Message, Sequence[Union[int, Message]]], visibility_timeout: Seconds) -> Optional[List[bool]]:
        """Extend a held message's lease to visibility_timeout seconds from now."""
        return self._settle("consumer.extend", m, seconds=_seconds("visibility_timeout", visibility_timeout))

    def held(self) -> int:
        """How many messages this consumer holds."""
        return _native.call("consumer.held", {"c": self._h})

    def run(self, handler: Handler, *, stop: Optional[threading.Event] = None, **options: Any) -> None:
        """Run the Go poll loop, calling handler(message) for each message.

        Same semantics as Go's Consumer.Run: a handler that returns archives
        its message; one that raises makes it visible again after a backoff,
        and dead-letters it after ``max_attempts`` deliveries (at once for a
        :class:`PermanentError`). Handlers run up to ``concurrency`` at a
        time, on threads this call starts; each takes up to ``batch_size //
        concurrency`` messages from the loop at once and runs them in turn.
        Returns when ``stop`` is set, or raises KeyboardInterrupt after a
        graceful shutdown on Ctrl-C.

        Options: ``concurrency`` (1), ``batch_size`` (10),
        ``visibility_timeout``, ``poll_interval``, ``max_attempts`` (5),
        ``backoff`` (seconds or :class:`ExponentialBackoff`),
        ``heartbeat_interval``, ``reclaim_after``, ``shutdown_timeout``,
        ``scheduler``.
        """
        if not callable(handler):
            raise errors.InvalidArgument("pgqrs: invalid argument: handler must be callable")
        a = run_options(**options)
        a.update(c=self._h)
        threads = max(a["concurrency"], 1)
        # Each thread takes an even share of a batch at a time, so that a
        # batch crosses into Python in a few calls, not one per message.
        share = max(a["batch_size"] // threads, 1) if a["batch_size"] > 0 else max(10 // threads, 1)
        call_raw, dumps, error_doc = _native.call_raw, _native.dumps, _native.error_doc

        failed: List[BaseException] = []

        def work(j: int) -> None:
            try:
                take_all(j)
            except BaseException as e:  # the binding failed: stop the loop, raise in run
                failed.append(e)
                _native.call("job.stop", {"j": j})

        def take_all(j: int) -> None:
            take = dumps({"j": j, "max": share, "timeout": 1.0, "linger": threads > 1}).encode()
            while True:
                got = call_raw(b"job.take", take)
                if got["end"]:
                    return
                items = got["m"] or ()
                outs: List[Dict[str, Any]] = []
                try:
                    for item in items:
                        try:
                            handler(Message(item["m"]))
                            outs.append({"k": item["k"]})
                        except BaseException as e:
                            outs.append({"k": item["k"], "e": error_doc(e)})
                finally:
                    # Whatever happened, every taken message gets an answer.
                    for item in items[len(outs):]:
                        outs.append({"k": item["k"], "e": {"type": "InternalError", "message": "the handler thread stopped before this message"}})
                    _native.call("job.done", {"j": j, "r": outs})

        serve("consumer.run", a, stop, work=work, threads=threads)
        if failed:
            raise failed[0]


class Runs:
    """Workflow runs of the store: get, cancel, resume, retry, list."""

    def __init__(self, store: Store) -> None:
        self._s = store

    def get(self, id: int) -> RunInfo:
        return _build(RunInfo, _native.call("runs.get", {"h": self._s._h, "id": _int("run ID", id)}))

    def status(self, id: int) -> str:
        return self.get(id).status

    def cancel(self, id: int) -> str:
        """Cancel a run; returns its status (CANCELLED, or CANCELLING while a step runs)."""
        return _native.call("runs.cancel", {"h": self._s._h, "id": _int("run ID", id)})

    def resume(self, id: int) -> None:
        _native.call("runs.resume", {"h": self._s._h, "id": _int("run ID", id)})

    def retry(self, id: int) -> None:
        _native.call("runs.retry", {"h": self._s._h, "id": _int("run ID", id)})

    def list(self, workflow: str = "", status: str = "", before: int = 0, limit: int = 0) -> List[RunInfo]:
        docs = _native.call(
            "runs.list",
            {"h": self._s._h, "workflow": _str("workflow", workflow), "status": _str("status", status), "before": _int("before", before), "limit": _int("limit", limit)},
        )
        return [_build(RunInfo, d) for d in docs or []]
