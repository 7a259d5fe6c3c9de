"""The ctypes boundary to libpgqrs.so (python/capi): calls, callbacks, tokens.

Private: the public API is in the other modules.
"""

from __future__ import annotations

import atexit
import ctypes
import itertools
import json
import os
import threading
from typing import Any, Callable, Dict

from . import errors

_LIB_NAME = "libpgqrs.so"


def _load() -> ctypes.CDLL:
    path = os.environ.get("PGQRS_LIB") or os.path.join(os.path.dirname(__file__), "_lib", _LIB_NAME)
    if not os.path.exists(path):
        raise ImportError(
            f"pgqrs: the shared library {path} is missing; build it with `make python` "
            "in the pgqrs-go checkout (go build -buildmode=c-shared)"
        )
    lib = ctypes.CDLL(path)  # CDLL: the GIL is released during every call
    lib.pgqrs_call.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t)]
    lib.pgqrs_call.restype = ctypes.c_void_p
    lib.pgqrs_free.argtypes = [ctypes.c_void_p]
    lib.pgqrs_free.restype = None
    lib.pgqrs_reply.argtypes = [ctypes.c_uint64, ctypes.c_char_p, ctypes.c_size_t]
    lib.pgqrs_reply.restype = None
    return lib


_lib = _load()
_string_at = ctypes.string_at
_loads = json.loads
_encoder = json.JSONEncoder(allow_nan=False, separators=(",", ":"), ensure_ascii=False)


def dumps(v: Any) -> str:
    """JSON as the engine accepts it (no NaN or infinities)."""
    return _encoder.encode(v)


def call_raw(op: bytes, data: bytes) -> Any:
    """Run operation op with JSON arguments data; return its result or raise."""
    n = ctypes.c_size_t()
    p = _lib.pgqrs_call(op, data, len(data), ctypes.byref(n))
    try:
        doc = _loads(_string_at(p, n.value))
    finally:
        _lib.pgqrs_free(p)
    if "error" in doc:
        raise errors.from_doc(doc["error"])
    return doc["ok"]


def call(op: str, args: Dict[str, Any]) -> Any:
    try:
        data = dumps(args).encode()
    except (TypeError, ValueError) as e:
        raise errors.InvalidArgument(f"pgqrs: invalid argument: {e}") from None
    return call_raw(op.encode(), data)


# Python objects the engine calls back: token → function(call, doc) → code.
_tokens: Dict[int, Callable[[int, dict], int]] = {}
_seq = itertools.count(1)
_closing = False

CB_OK = 0
CB_REPLY = 1
CB_FAILED = 2


def register(fn: Callable[[int, dict], int]) -> int:
    t = next(_seq)
    _tokens[t] = fn
    return t


def unregister(t: int) -> None:
    _tokens.pop(t, None)


def reply(call_id: int, doc: Dict[str, Any]) -> int:
    try:
        b = dumps(doc).encode()
    except (TypeError, ValueError) as e:
        b = dumps(
            {"error": {"type": "InvalidPayload", "message": f"the result does not encode as JSON: {e}", "kind": "permanent"}}
        ).encode()
    _lib.pgqrs_reply(call_id, b, len(b))
    return CB_REPLY


def error_doc(e: BaseException) -> Dict[str, Any]:
    """What Go is told of an exception raised by a handler, a step or a workflow."""
    doc: Dict[str, Any] = {"type": type(e).__name__, "message": str(e)}
    go = getattr(e, "_go_id", 0)
    if go:
        doc["go"] = go
    # Marked errors count anywhere in the exception's chain of causes.
    seen = e
    while seen is not None:
        if isinstance(seen, errors.PermanentError):
            doc["kind"] = "permanent"
            break
        if isinstance(seen, errors.TransientError):
            doc["kind"] = "transient"
            if seen.retry_after:
                doc["retry_after"] = float(seen.retry_after)
            break
        seen = seen.__cause__
    return doc


def _dispatch(call_id: int, data: int, n: int) -> int:
    try:
        if _closing:
            return reply(call_id, {"error": {"type": "Shutdown", "message": "the Python interpreter is exiting"}})
        doc = _loads(_string_at(data, n))
        fn = _tokens.get(doc["t"])
        if fn is None:
            return reply(call_id, {"error": {"type": "InternalError", "message": f"no Python callable {doc['t']}"}})
        return fn(call_id, doc)
    except BaseException as e:  # never let an exception cross into Go
        try:
            return reply(call_id, {"error": error_doc(e)})
        except BaseException:
            return CB_FAILED


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_size_t)
_callback = _CALLBACK(_dispatch)  # kept alive for the life of the process
_lib.pgqrs_set_callback(_callback)

# Run loops in progress, stopped at exit so that no Go thread calls into a
# finalising interpreter.
_jobs: Dict[int, bool] = {}
_jobs_lock = threading.Lock()


def job_started(j: int) -> None:
    with _jobs_lock:
        _jobs[j] = True


def job_ended(j: int) -> None:
    with _jobs_lock:
        _jobs.pop(j, None)


@atexit.register
def _stop_jobs() -> None:
    global _closing
    with _jobs_lock:
        live = list(_jobs)
    for j in live:
        try:
            call("job.stop", {"j": j})
        except errors.Error:
            pass
    for j in live:
        try:
            call("job.wait", {"j": j, "timeout": 10})
        except errors.Error:
            pass
    _closing = True
