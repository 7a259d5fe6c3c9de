"""The result types of pgqrs: messages, queues, metrics, workers, runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, List, Optional, Type, TypeVar

T = TypeVar("T")


def _time(s: Optional[str]) -> Optional[datetime]:
    return datetime.fromisoformat(s) if s else None


def _build(cls: Type[T], d: Dict[str, Any]) -> T:
    """cls from the Go engine's JSON document d (snake_case, RFC 3339 times)."""
    kw = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in d:
            v = d[f.name]
            if f.name.endswith("_at") or f.name == "deadline":
                v = _time(v)
            kw[f.name] = v
    return cls(**kw)  # type: ignore[call-arg]


class Message:
    """One delivery of a queued message to a consumer.

    ``payload`` is the decoded JSON; ``read_count`` counts deliveries, this
    one included; ``visible_at`` is when the current lease expires.
    """

    __slots__ = ("id", "queue", "payload", "read_count", "priority", "last_error", "headers", "_enq", "_vis")

    def __init__(self, d: Dict[str, Any]) -> None:
        self.id: int = d["id"]
        self.queue: str = d["queue"]
        self.payload: Any = d["payload"]
        self.read_count: int = d["read_count"]
        self.priority: int = d.get("priority", 0)
        self.last_error: str = d.get("last_error", "")
        self.headers: Dict[str, str] = d.get("headers") or {}
        self._enq: str = d["enqueued_at"]
        self._vis: str = d["visible_at"]

    @property
    def enqueued_at(self) -> datetime:
        return datetime.fromisoformat(self._enq)

    @property
    def visible_at(self) -> datetime:
        return datetime.fromisoformat(self._vis)

    def __repr__(self) -> str:
        return f"Message(id={self.id}, queue={self.queue!r}, read_count={self.read_count}, payload={self.payload!r})"


@dataclass
class ArchivedMessage:
    """A message archived after processing, or dead-lettered (``dead``)."""

    id: int
    queue: str
    payload: Any = None
    read_count: int = 0
    enqueued_at: Optional[datetime] = None
    archived_at: Optional[datetime] = None
    dead: bool = False
    last_error: str = ""
    priority: int = 0
    headers: Dict[str, str] = field(default_factory=dict)
    cancelled: bool = False


@dataclass
class Queue:
    id: int
    name: str
    created_at: Optional[datetime] = None
    paused: bool = False
    paused_at: Optional[datetime] = None


@dataclass
class QueueMetrics:
    queue: str
    pending: int = 0
    visible: int = 0
    leased: int = 0
    delayed: int = 0
    archived: int = 0
    dead: int = 0
    paused: bool = False
    paused_at: Optional[datetime] = None
    oldest_pending_at: Optional[datetime] = None
    newest_enqueued_at: Optional[datetime] = None
    in_flight: int = 0
    limits: Dict[str, Any] = field(default_factory=dict)


@dataclass
class SystemStats:
    queues: int = 0
    live_messages: int = 0
    archived: int = 0
    dead: int = 0
    live_workers: int = 0
    workers: int = 0
    schema_version: int = 0


@dataclass
class WorkerInfo:
    id: int
    name: str
    queue: str = ""
    role: str = ""
    status: str = ""
    started_at: Optional[datetime] = None
    heartbeat_at: Optional[datetime] = None
    stopped_at: Optional[datetime] = None


@dataclass
class WorkerHealth:
    queue: str = ""
    ready: int = 0
    polling: int = 0
    suspended: int = 0
    interrupted: int = 0
    stopped: int = 0
    stale: int = 0


@dataclass
class Enqueued:
    """One job's outcome in :meth:`Producer.enqueue_jobs`."""

    id: int
    duplicate: bool = False


@dataclass
class RunInfo:
    """A workflow run. ``status`` is QUEUED, RUNNING, PAUSED, CANCELLING,
    CANCELLED, SUCCESS or ERROR; ``output`` is set on SUCCESS, ``error`` on ERROR."""

    id: int
    workflow: str
    status: str
    input: Any = None
    output: Any = None
    error: str = ""
    resume_at: Optional[datetime] = None
    created_at: Optional[datetime] = None
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None
    deadline: Optional[datetime] = None

    @property
    def finished(self) -> bool:
        return self.status in ("SUCCESS", "ERROR", "CANCELLED")


@dataclass
class WorkflowInfo:
    name: str
    created_at: Optional[datetime] = None
    runs: Dict[str, int] = field(default_factory=dict)


@dataclass
class QueueLimits:
    """A queue's flow-control settings (0 = not set) and its leases held now."""

    max_in_flight: int = 0
    per_group: int = 0
    rate: int = 0
    rate_period: float = 0.0  # seconds
    in_flight: int = 0


@dataclass
class ScheduleInfo:
    """A periodic schedule as stored: a cron expression and what it starts."""

    name: str
    cron: str
    timezone: str = "UTC"
    queue: str = ""
    workflow: str = ""
    payload: Any = None
    priority: int = 0
    headers: Dict[str, str] = field(default_factory=dict)
    paused: bool = False
    next_run_at: Optional[datetime] = None
    last_run_at: Optional[datetime] = None
    created_at: Optional[datetime] = None
    updated_at: Optional[datetime] = None


@dataclass
class ExponentialBackoff:
    """A backoff doubling from ``base`` to ``max`` seconds, with jitter."""

    base: float
    max: float

    def _doc(self) -> Dict[str, float]:
        return {"base": float(self.base), "max": float(self.max)}


@dataclass
class RetryPolicy:
    """How a failed workflow step runs again (Go's pgqrs.RetryPolicy).

    ``max_retries``: 0 means the default, 3; negative means never.
    ``backoff``: seconds (fixed) or an :class:`ExponentialBackoff`; default 1 s to 60 s.
    ``retry_all_errors``: retry every error not marked permanent (default:
    only :class:`pgqrs.TransientError`).
    """

    max_retries: int = 0
    backoff: Any = None
    retry_all_errors: bool = False

    def _doc(self) -> Dict[str, Any]:
        d: Dict[str, Any] = {"max_retries": int(self.max_retries), "retry_all_errors": bool(self.retry_all_errors)}
        if self.backoff is not None:
            d["backoff"] = backoff_doc(self.backoff)
        return d


def backoff_doc(b: Any) -> Dict[str, Any]:
    if isinstance(b, ExponentialBackoff):
        return b._doc()
    if isinstance(b, (int, float)) and not isinstance(b, bool):
        return {"fixed": float(b)}
    from .errors import InvalidArgument

    raise InvalidArgument(f"pgqrs: invalid argument: backoff must be seconds or an ExponentialBackoff, not {type(b).__name__}")
