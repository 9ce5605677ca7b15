"""Turning ``hfreduce.Handle`` objects into ``torch.futures.Future`` objects, completed off the caller's thread.

torch's DDP reducer and ``torch.distributed`` callers wait on futures; HFReduce hands back
``hfreduce.Handle`` objects whose collectives run in issue order on one C++ thread. One daemon thread per process waits
for each handle in that same order (GIL released inside ``wait``) and completes its future, so the
thread that issued the collective (the autograd engine's, for a comm hook) never blocks on the wire.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import torch

from fireflyer.haiscale.errors import CommunicationError

_Job = tuple[Sequence[Any], torch.futures.Future, Callable[[], Any], str, bool]


class _Completer:
    """The FIFO of pending (works, future, result, what, keep_type) jobs and the daemon thread draining it."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: _Job) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="haiscale-hfreduce-completer", daemon=True
                )
                self._thread.start()
        self._queue.put(job)

    def _run(self) -> None:
        while True:
            works, fut, result, what, keep_type = self._queue.get()
            first: Exception | None = None
            for w in works:  # wait for every one, so no buffer is still in use when the future fails
                try:
                    w.wait()
                except Exception as exc:
                    first = first or exc
            if first is None:
                try:
                    fut.set_result(result())
                except Exception as exc:
                    fut.set_exception(CommunicationError(f"{what} failed: {exc}"))
                continue
            fut.set_exception(_error(first, what, keep_type))


def _error(exc: Exception, what: str, keep_type: bool) -> Exception:
    """The exception a future carries: HFReduce's own class (``keep_type``) or a CommunicationError."""
    from hfreduce.errors import HFReduceError

    if keep_type and isinstance(exc, HFReduceError):
        err: Exception = type(exc)(f"{what} failed: {exc}")
    else:
        err = CommunicationError(f"{what} failed on hfreduce ({type(exc).__name__}): {exc}")
    err.__cause__ = exc
    return err


_completer = _Completer()


def future_of(
    works: Sequence[Any], result: Callable[[], Any], what: str, keep_type: bool = False
) -> torch.futures.Future:
    """A future completed with ``result()`` once every HFReduce handle in ``works`` finished, or with the
    first error (naming ``what``): a ``CommunicationError``, or with ``keep_type`` the ``hfreduce.errors``
    class itself. Completed by the background completer thread, in submission order."""
    fut: torch.futures.Future = torch.futures.Future()
    _completer.submit((works, fut, result, what, keep_type))
    return fut
