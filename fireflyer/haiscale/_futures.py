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


class _Completer:
    """The FIFO of (works, future, result) triples and the daemon thread draining it."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Sequence[Any], torch.futures.Future, Callable[[], Any], str]] = (
            queue.SimpleQueue()
        )
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(
        self, works: Sequence[Any], fut: torch.futures.Future, result: Callable[[], Any], what: str
    ) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="haiscale-hfreduce-completer", daemon=True
                )
                self._thread.start()
        self._queue.put((works, fut, result, what))

    def _run(self) -> None:
        while True:
            works, fut, result, what = self._queue.get()
            try:
                for w in works:
                    w.wait()
                value = result()
            except Exception as exc:  # every failure goes to the waiter
                fut.set_exception(CommunicationError(f"{what} failed on hfreduce: {exc}"))
                continue
            fut.set_result(value)


_completer = _Completer()


def future_of(works: Sequence[Any], result: Callable[[], Any], what: str) -> torch.futures.Future:
    """A future completed with ``result()`` once every HFReduce work in ``works`` finished (or with the first
    error, as a ``CommunicationError`` naming ``what``); completed by the background completer thread."""
    fut: torch.futures.Future = torch.futures.Future()
    _completer.submit(works, fut, result, what)
    return fut
