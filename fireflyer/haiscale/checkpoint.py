"""Asynchronous training checkpoints: snapshot model + optimizer to host memory now, write in the background.

``save_async`` copies every tensor of the model's and optimizer's state dicts (and of ``extra``) to
fresh CPU memory before it returns, so training may go on mutating parameters at once; a background
thread then writes the snapshot with ``fs3.checkpoint.save_state_dict`` (one file, CRC-checked,
renamed into place only when complete) to a local path, or to fs3 when an ``FS3Client`` is given.
In data-parallel training every rank holds the same state, so only ``writer_rank`` (0) snapshots and
writes; the others get an already-finished handle. ``load`` reads the file back on every rank.
"""

from __future__ import annotations

import copy
import os
import threading
from typing import Any

import torch
from torch import nn

from fs3.checkpoint import CheckpointStats, load_state_dict, save_state_dict
from fs3.pio import get_filesystem

FORMAT = "haiscale-checkpoint/1"


def _snapshot(obj: Any) -> Any:
    """A deep copy of ``obj`` whose tensors are detached CPU clones (containers rebuilt, leaves deep-copied)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) is not dict else {}
        for k, v in obj.items():
            out[k] = _snapshot(v)
        return out
    if isinstance(obj, list):
        return [_snapshot(v) for v in obj]
    if isinstance(obj, tuple) and not hasattr(obj, "_fields"):
        return tuple(_snapshot(v) for v in obj)
    return copy.deepcopy(obj)


def _this_rank() -> int:
    """The caller's rank: torch.distributed's, else HFReduce's, else RANK, else 0."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    try:
        import hfreduce

        if hfreduce.is_initialized():
            return hfreduce.get_rank()
    except ImportError:  # pragma: no cover - hfreduce ships with this repo
        pass
    return int(os.environ.get("RANK", "0"))


class CheckpointHandle:
    """One background save: ``wait()`` blocks until the file is in place and re-raises the writer's error."""

    def __init__(self, path: str, thread: threading.Thread | None) -> None:
        self.path = path
        self._thread = thread
        self._error: BaseException | None = None
        self._stats: CheckpointStats | None = None

    def done(self) -> bool:
        """Whether the write finished (successfully or not); never blocks."""
        return self._thread is None or not self._thread.is_alive()

    def wait(self, timeout_s: float | None = None) -> CheckpointStats | None:
        """Block until written; the write's stats (None on a rank that does not write), or its exception."""
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                raise TimeoutError(f"checkpoint {self.path} still being written after {timeout_s:g} s")
        if self._error is not None:
            raise self._error
        return self._stats

    def _run(self, snapshot: dict[str, Any], client: Any) -> None:
        try:
            parent = os.path.dirname(self.path)
            if parent:
                get_filesystem(client).makedirs(parent)
            self._stats = save_state_dict(snapshot, self.path, client=client)
        except BaseException as exc:  # handed to wait()
            self._error = exc


def save_async(
    path: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    extra: Any = None,
    *,
    client: Any = None,
    writer_rank: int = 0,
    rank: int | None = None,
) -> CheckpointHandle:
    """Snapshot ``model``/``optimizer``/``extra`` to host memory now and write it to ``path`` in the background.

    ``client`` (an ``fs3.client.FS3Client``) makes ``path`` an fs3 path; without it, a local one. Missing
    parent directories are created. Only ``writer_rank`` writes (``rank`` defaults to this process's).
    """
    me = _this_rank() if rank is None else rank
    if me != writer_rank:
        return CheckpointHandle(path, None)
    snapshot = {
        "format": FORMAT,
        "model": _snapshot(model.state_dict()),
        "optimizer": None if optimizer is None else _snapshot(optimizer.state_dict()),
        "extra": _snapshot(extra),
    }
    handle = CheckpointHandle(path, None)
    thread = threading.Thread(
        target=handle._run, args=(snapshot, client), name=f"ckpt-write:{path}", daemon=True
    )
    handle._thread = thread
    thread.start()
    return handle


def load(
    path: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    client: Any = None,
    strict: bool = True,
    weights_only: bool = True,
) -> Any:
    """Load what ``save_async`` wrote at ``path`` into ``model`` (and ``optimizer``); returns the ``extra``.

    ``weights_only`` (default) unpickles only containers, numbers, strings and torch dtypes/sizes.
    """
    state = load_state_dict(path, client=client, weights_only=weights_only)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path}: not a HaiScale checkpoint (no {FORMAT!r} marker)")
    model.load_state_dict(state["model"], strict=strict)
    if optimizer is not None:
        if state["optimizer"] is None:
            raise ValueError(f"{path}: saved without optimizer state")
        optimizer.load_state_dict(state["optimizer"])
    return state["extra"]
