"""pgqrs: a durable message queue and workflow engine in your database.

The Python package of pgqrs for Go (github.com/pgqrs/pgqrs-go): the Go
engine, built as a shared library, behind a Pythonic API, so that Python and
Go services share queues and workflows in one PostgreSQL, SQLite or Turso
database. See docs/python.md.
"""

from .errors import *  # noqa: F401,F403 - the exception classes
from .errors import Error, PermanentError, TransientError
from .store import Admin, Consumer, Producer, Runs, Schedules, Store, open
from .types import (
    ArchivedMessage,
    Enqueued,
    ExponentialBackoff,
    Message,
    Queue,
    QueueLimits,
    QueueMetrics,
    RetryPolicy,
    RunInfo,
    ScheduleInfo,
    SystemStats,
    WorkerHealth,
    WorkerInfo,
    WorkflowInfo,
)
from .workflow import Run, Workflow, workflow

__version__ = "0.1.0"
