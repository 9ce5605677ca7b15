"""allgather, reduce_scatter, all_to_all, gather, scatter (and broadcast of any dtype), from HFReduce's steps.

Each collective is a short sequence of broadcasts (one rank's data to every rank) or reduces (a sum
to one rank). Every step runs the shared-memory pipeline of the node segment (zero-copy for buffers
from ``hfreduce.empty``) and the inter-node tree, in issue order, several in flight at once, and is
agreed across ranks before it moves data, tagged with the composite's name, the user's element dtype
and root: a rank that passes another size, dtype or root makes every rank raise MismatchError.

float32/float16/bfloat16 travel as they are. Any other dtype (int64, bool, float64, ...) travels
byte for byte as exact 16-bit words carried in float32 (twice the bytes: the fallback where a copy is
cheaper than a kernel of its own). reduce_scatter sums, so it takes float dtypes only. Outputs are
written when the collective's handle is waited for (``async_op=False`` does that before returning).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hfreduce._api import _DTYPE_CODES, Handle, group
from hfreduce.errors import UsageError


def _is_torch(x: object) -> bool:
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def _dtype(x: Any) -> str:
    return str(x.dtype).removeprefix("torch.") if _is_torch(x) else np.dtype(x.dtype).name


def _numel(x: Any) -> int:
    return int(x.numel()) if _is_torch(x) else int(x.size)


def _check(x: Any, rank: int, what: str) -> None:
    """A contiguous, writable CPU numpy array or torch tensor, else UsageError naming ``what``."""
    if _is_torch(x):
        if x.device.type != "cpu":
            raise UsageError(f"rank {rank}: {what} is on {x.device}; HFReduce takes CPU tensors")
        if not x.is_contiguous():
            raise UsageError(f"rank {rank}: {what} of shape {tuple(x.shape)} is not contiguous")
        return
    if not isinstance(x, np.ndarray):
        raise UsageError(f"rank {rank}: {what} is a {type(x).__name__}, not a numpy array or a torch tensor")
    if not x.flags.c_contiguous:
        raise UsageError(f"rank {rank}: {what} of shape {x.shape} is not C-contiguous")
    if not x.flags.writeable:
        raise UsageError(f"rank {rank}: {what} is read-only")


def _bytes(x: Any) -> np.ndarray:
    """The bytes of a contiguous buffer, as a writable uint8 numpy view (no copy)."""
    if _is_torch(x):
        import torch

        return x.detach().reshape(-1).view(torch.uint8).numpy()
    return x.reshape(-1).view(np.uint8)


def _flat(x: Any) -> Any:
    return x.reshape(-1)


def _pieces(x: Any, world: int, rank: int, what: str) -> list[Any]:
    """A list of ``world`` buffers, or one buffer cut into ``world`` equal contiguous views."""
    if isinstance(x, (list, tuple)):
        if len(x) != world:
            raise UsageError(f"rank {rank}: {what} lists {len(x)} buffers; this job has {world} ranks")
        for i, p in enumerate(x):
            _check(p, rank, f"{what}[{i}]")
        return list(x)
    _check(x, rank, what)
    n = _numel(x)
    if n % world:
        raise UsageError(f"rank {rank}: {what} has {n} elements, not a multiple of the {world} ranks")
    k = n // world
    flat = _flat(x)
    return [flat[i * k : (i + 1) * k] for i in range(world)]


def _same_shape(ref: Any, others: list[Any], rank: int, what: str) -> None:
    n, dt = _numel(ref), _dtype(ref)
    for i, o in enumerate(others):
        if _numel(o) != n or _dtype(o) != dt:
            raise UsageError(
                f"rank {rank}: {what}[{i}] holds {_numel(o)} {_dtype(o)} elements; expected {n} {dt} like the input"
            )


class _Carrier:
    """What one broadcast moves for a buffer: the buffer itself (float dtypes) or its 16-bit words in float32."""

    def __init__(self, nbytes: int, native: Any | None) -> None:
        self.native = native
        self.words = None if native is not None else np.zeros((nbytes + 1) // 2, np.float32)

    @property
    def buf(self) -> Any:
        return self.native if self.native is not None else self.words

    def load(self, src: Any) -> None:
        """Fill the carrier with ``src``'s bytes."""
        if self.native is not None:
            if self.native is not src:
                _bytes(self.native)[:] = _bytes(src)
            return
        b = _bytes(src)
        half = b.size // 2
        self.words[:half] = b[: 2 * half].view(np.uint16)
        if b.size % 2:
            self.words[half] = b[-1]

    def store(self, dst: Any) -> None:
        """Write the carried bytes into ``dst``."""
        if self.native is not None:
            if self.native is not dst:
                _bytes(dst)[:] = _bytes(self.native)
            return
        b = _bytes(dst)
        half = b.size // 2
        b[: 2 * half].view(np.uint16)[:] = self.words[:half].astype(np.uint16)
        if b.size % 2:
            b[-1] = np.uint8(self.words[half])


def _carrier_for(target: Any, nbytes: int) -> _Carrier:
    """A carrier that is ``target`` itself when it can travel as it is."""
    native = target if target is not None and _dtype(target) in _DTYPE_CODES else None
    return _Carrier(nbytes, native)


def _nbytes(x: Any) -> int:
    return _bytes(x).size


def broadcast(buf: Any, root: int = 0, async_op: bool = False) -> Handle | None:
    """``root``'s ``buf`` into every rank's ``buf``, any dtype (float dtypes go straight to the core)."""
    g = group()
    me, world = g.topo.rank, g.topo.world_size
    native = not (isinstance(buf, np.ndarray) or _is_torch(buf)) or _dtype(buf) in _DTYPE_CODES
    if native:  # buffer_info checks the rest and names what is wrong
        return g.submit("broadcast", buf, "sum", root, async_op)
    _check(buf, me, "buffer")
    if not 0 <= root < world:
        raise UsageError(f"rank {me}: root {root} is not a rank of a {world}-rank job")
    c = _Carrier(_nbytes(buf), None)
    if me == root:
        c.load(buf)
    state = g.step("broadcast", c.buf, root=root, part=("broadcast", _dtype(buf), root))

    def finish() -> None:
        if me != root:
            c.store(buf)

    handle = Handle(
        [state], (buf, c), f"rank {me}: broadcast of {_numel(buf)} {_dtype(buf)} from {root}", finish
    )
    return g.finish(handle, async_op)


def allgather(outputs: Any, buf: Any, async_op: bool = False) -> Handle | None:
    """Every rank's ``buf`` into every rank's ``outputs``: a list of ``world`` buffers like ``buf``, or one
    buffer of ``world`` times its elements (rank r's part at ``[r*n:(r+1)*n]``). Any dtype."""
    g = group()
    me, world = g.topo.rank, g.topo.world_size
    _check(buf, me, "input")
    outs = _pieces(outputs, world, me, "outputs")
    _same_shape(buf, outs, me, "outputs")
    elem = _dtype(buf)
    carriers, states = [], []
    for r in range(world):
        c = _carrier_for(outs[r], _nbytes(buf))
        if r == me:
            c.load(buf)
        states.append(g.step("broadcast", c.buf, root=r, part=("allgather", elem, -1)))
        carriers.append(c)

    def finish() -> None:
        for r, c in enumerate(carriers):
            c.store(outs[r])

    handle = Handle(states, (buf, outs, carriers), f"rank {me}: allgather of {_numel(buf)} {elem}", finish)
    return g.finish(handle, async_op)


def gather(buf: Any, outputs: Any = None, root: int = 0, async_op: bool = False) -> Handle | None:
    """Every rank's ``buf`` into ``outputs`` on ``root`` (a list of ``world`` buffers, or one buffer of
    ``world`` times the elements); the other ranks pass ``outputs=None``. Any dtype."""
    g = group()
    me, world = g.topo.rank, g.topo.world_size
    _check(buf, me, "input")
    if not 0 <= root < world:
        raise UsageError(f"rank {me}: root {root} is not a rank of a {world}-rank job")
    outs: list[Any] = [None] * world
    if me == root:
        if outputs is None:
            raise UsageError(f"rank {me}: gather to root {root} needs outputs on the root")
        outs = _pieces(outputs, world, me, "outputs")
        _same_shape(buf, outs, me, "outputs")
    elem = _dtype(buf)
    carriers, states = [], []
    for r in range(world):
        target = outs[r] if me == root else (_zeros_like(buf) if elem in _DTYPE_CODES else None)
        c = _carrier_for(target, _nbytes(buf))  # non-roots receive into scratch
        if r == me:
            c.load(buf)
        states.append(g.step("broadcast", c.buf, root=r, part=("gather", elem, root)))
        carriers.append(c)

    def finish() -> None:
        if me == root:
            for r, c in enumerate(carriers):
                c.store(outs[r])

    handle = Handle(
        states, (buf, outs, carriers), f"rank {me}: gather of {_numel(buf)} {elem} to {root}", finish
    )
    return g.finish(handle, async_op)


def scatter(out: Any, inputs: Any = None, root: int = 0, async_op: bool = False) -> Handle | None:
    """Part r of ``inputs`` on ``root`` (a list of ``world`` buffers like ``out``, or one buffer of ``world``
    times its elements) into ``out`` on rank r; the other ranks pass ``inputs=None``. Any dtype."""
    g = group()
    me, world = g.topo.rank, g.topo.world_size
    _check(out, me, "output")
    if not 0 <= root < world:
        raise UsageError(f"rank {me}: root {root} is not a rank of a {world}-rank job")
    n = _nbytes(out)
    elem = _dtype(out)
    whole = _Carrier(n * world, _zeros_like(out, world) if elem in _DTYPE_CODES else None)
    if me == root:
        if inputs is None:
            raise UsageError(f"rank {me}: scatter from root {root} needs inputs on the root")
        ins = _pieces(inputs, world, me, "inputs")
        _same_shape(out, ins, me, "inputs")
        src = _bytes(whole.native) if whole.native is not None else None
        if src is not None:
            for r, p in enumerate(ins):
                src[r * n : (r + 1) * n] = _bytes(p)
        else:
            cat = np.concatenate([_bytes(p) for p in ins])
            whole.load(cat)
    state = g.step("broadcast", whole.buf, root=root, part=("scatter", elem, root))

    def finish() -> None:
        if whole.native is not None:
            _bytes(out)[:] = _bytes(whole.native)[me * n : (me + 1) * n]
        else:
            cat = np.empty(n * world, np.uint8)
            whole.store(cat)
            _bytes(out)[:] = cat[me * n : (me + 1) * n]

    handle = Handle([state], (out, whole), f"rank {me}: scatter of {_numel(out)} {elem} from {root}", finish)
    return g.finish(handle, async_op)


def _zeros_like(x: Any, times: int = 1) -> Any:
    """A zeroed flat buffer of ``times`` x's elements, of x's kind and dtype."""
    if _is_torch(x):
        import torch

        return torch.zeros(_numel(x) * times, dtype=x.dtype)
    return np.zeros(_numel(x) * times, x.dtype)


def all_to_all(outputs: Any, inputs: Any, async_op: bool = False) -> Handle | None:
    """Part j of rank i's ``inputs`` into part i of rank j's ``outputs`` (lists of ``world`` equal buffers,
    or single buffers cut into ``world`` equal parts). Any dtype. Each rank's whole input is broadcast
    once, so it moves ``world`` times the data of a dedicated exchange: the correct fallback."""
    g = group()
    me, world = g.topo.rank, g.topo.world_size
    ins = _pieces(inputs, world, me, "inputs")
    outs = _pieces(outputs, world, me, "outputs")
    _same_shape(ins[0], ins[1:] + outs, me, "inputs/outputs")
    n = _nbytes(ins[0])
    elem = _dtype(ins[0])
    wholes, states = [], []
    for r in range(world):
        c = _Carrier(n * world, _zeros_like(ins[0], world) if elem in _DTYPE_CODES else None)
        if r == me:
            cat = np.concatenate([_bytes(p) for p in ins]) if world else np.empty(0, np.uint8)
            if c.native is not None:
                _bytes(c.native)[:] = cat
            else:
                c.load(cat)
        states.append(g.step("broadcast", c.buf, root=r, part=("all_to_all", elem, -1)))
        wholes.append(c)

    def finish() -> None:
        for r, c in enumerate(wholes):
            if c.native is not None:
                _bytes(outs[r])[:] = _bytes(c.native)[me * n : (me + 1) * n]
            else:
                cat = np.empty(n * world, np.uint8)
                c.store(cat)
                _bytes(outs[r])[:] = cat[me * n : (me + 1) * n]

    handle = Handle(
        states, (ins, outs, wholes), f"rank {me}: all_to_all of {world}x{_numel(ins[0])} {elem}", finish
    )
    return g.finish(handle, async_op)


def reduce_scatter(out: Any, inputs: Any, op: str = "sum", async_op: bool = False) -> Handle | None:
    """The sum (or average) over ranks of part r of ``inputs`` (a list of ``world`` buffers like ``out``,
    or one buffer of ``world`` times its elements) into ``out`` on rank r: one reduce per rank, each to
    its owner. float32/float16/bfloat16. ``inputs`` is left as it was."""
    g = group()
    me, world = g.topo.rank, g.topo.world_size
    _check(out, me, "output")
    ins = _pieces(inputs, world, me, "inputs")
    _same_shape(out, ins, me, "inputs")
    elem = _dtype(out)
    if elem not in _DTYPE_CODES:
        raise UsageError(
            f"rank {me}: reduce_scatter sums; unsupported dtype {elem} (use float32, float16, bfloat16)"
        )
    states = []
    for r in range(world):
        if r == me:
            _bytes(out)[:] = _bytes(ins[r])
            states.append(g.step("reduce", out, op=op, root=r, part=("reduce_scatter", elem, -1)))
        else:
            # A non-root's buffer is read, never written, by reduce.
            states.append(g.step("reduce", ins[r], op=op, root=r, part=("reduce_scatter", elem, -1)))
    handle = Handle(states, (out, ins), f"rank {me}: reduce_scatter({op}) of {_numel(out)} {elem}")
    return g.finish(handle, async_op)


__all__ = ["all_to_all", "allgather", "broadcast", "gather", "reduce_scatter", "scatter"]
