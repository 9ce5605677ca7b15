"""One rank of an HFReduce test job: ``python rank_script.py SCENARIO`` writes ``$HFR_OUT/rank-<r>.json``.

Started by tests/hfreduce/conftest.py under mpirun or with RANK/WORLD_SIZE/MASTER_* env vars. Each
scenario checks many cases in one job (starting ranks is the slow part) and reports every failure
it saw instead of stopping at the first, so a test's assertion message shows the whole picture.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback

import numpy as np

import hfreduce

OUT = os.environ["HFR_OUT"]
QUICK = os.environ.get("HFR_QUICK") == "1"
SENTINEL = 7.0
PAD = 3  # guard elements either side of every buffer: catches SIMD tails that write too far
# Element counts: tiny, around SIMD widths (8/16/32 lanes), primes, around and across the chunk
# (tests run with HFREDUCE_CHUNK_BYTES=4096 or 12288: 1024/3072 float32, 2048/6144 16-bit elements)
# and many chunks (more than HFREDUCE_PIPELINE_DEPTH, so slots are reused).
SIZES = [1, 2, 3, 7, 15, 17, 31, 33, 63, 65, 129, 1021, 1024, 1031, 2053, 4099, 9221, 40009]
QUICK_SIZES = [1, 17, 1031, 9221]
UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}


def env_rank() -> int:
    for k in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "RANK"):
        if k in os.environ:
            return int(os.environ[k])
    return 0


def write_result(rank: int, obj: dict, name: str = "rank") -> None:
    path = os.path.join(OUT, f"{name}-{rank}.json")
    with open(path + ".tmp", "w") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)


def err_info(exc: BaseException) -> dict:
    return {"type": type(exc).__name__, "msg": str(exc), "hfreduce": isinstance(exc, hfreduce.HFReduceError)}


class Checker:
    """Counts checks and keeps the first failures (as text) for the test to print."""

    def __init__(self) -> None:
        self.checks = 0
        self.failures: list[str] = []

    def check(self, ok: bool, what: str) -> None:
        self.checks += 1
        if not ok and len(self.failures) < 30:
            self.failures.append(what)


# ----------------------------------------------------------------------------------- buffers
def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def rounded(x32: np.ndarray, dtype: str) -> np.ndarray:
    """float32 values rounded (to nearest even) to ``dtype``, as float64."""
    if dtype == "float32":
        return x32.astype(np.float64)
    if dtype == "float16":
        return x32.astype(np.float16).astype(np.float64)
    import torch

    return torch.from_numpy(np.ascontiguousarray(x32)).to(torch.bfloat16).to(torch.float64).numpy()


def inputs(case: int, rank: int, n: int, dtype: str) -> np.ndarray:
    """Rank ``rank``'s input of case ``case``: values in [0.5, 1.5) representable in ``dtype`` (float64)."""
    rng = np.random.default_rng([case, rank])
    return rounded(rng.uniform(0.5, 1.5, n).astype(np.float32), dtype)


def make_buffer(kind: str, dtype: str, n: int):
    """(whole allocation, the length-n view passed to hfreduce) for one buffer kind; guards hold SENTINEL."""
    total = n + 2 * PAD
    if kind == "numpy":
        full = np.full(total, SENTINEL, dtype=np.dtype(dtype))
    elif kind == "torch":
        import torch

        full = torch.full((total,), SENTINEL, dtype=torch_dtype(dtype))
    elif kind == "shm-numpy":
        full = hfreduce.empty(total, np.dtype(dtype))
        full[:] = SENTINEL
    elif kind == "shm-torch":
        full = hfreduce.empty(total, torch_dtype(dtype))
        full[:] = SENTINEL
    else:
        raise ValueError(kind)
    return full, full[PAD : PAD + n]


def fill(view, values: np.ndarray) -> None:
    if isinstance(view, np.ndarray):
        view[...] = values.astype(view.dtype)
    else:
        import torch

        view.copy_(torch.from_numpy(values).to(view.dtype))


def as_f64(x) -> np.ndarray:
    if isinstance(x, np.ndarray):
        return x.astype(np.float64)
    import torch

    return x.detach().to(torch.float64).numpy()


def expected_sum(case: int, n: int, dtype: str, world: int, op: str, ranks=None) -> np.ndarray:
    exact = sum(inputs(case, r, n, dtype) for r in (ranks if ranks is not None else range(world)))
    if op == "avg":
        # What the core computes: the sum rounded to dtype, times float32(1/world), rounded again.
        s = rounded(exact.astype(np.float32), dtype).astype(np.float32)
        return rounded(s * (np.float32(1.0) / np.float32(world)), dtype)
    return exact


def compare(
    chk: Checker, what: str, got: np.ndarray, exp: np.ndarray, dtype: str, num_nodes: int, op: str
) -> None:
    """Exact where the contract makes it exact, else within the rounding the algorithm may add.

    On one node a 16-bit sum is accumulated in float32 (exact for these inputs) and rounded once, so it
    must equal the exactly rounded sum; across nodes each network hop rounds a partial sum again.
    """
    if dtype != "float32" and num_nodes == 1:
        target = rounded(exp.astype(np.float32), dtype) if op == "sum" else exp
        bad = np.flatnonzero(got != target)
        chk.check(
            bad.size == 0,
            f"{what}: {bad.size} elements differ from the once-rounded float32 sum, "
            f"first at {bad[:3].tolist()}: got {got[bad[:3]].tolist()} want {target[bad[:3]].tolist()}",
        )
        return
    u = UNIT_ROUNDOFF[dtype]
    rtol = (num_nodes + 3) * u * (1 if dtype != "float32" else 4)
    err = np.abs(got - exp) / np.abs(exp)
    worst = int(np.argmax(err)) if err.size else 0
    chk.check(
        bool(err.size == 0 or err[worst] <= rtol),
        f"{what}: relative error {err[worst] if err.size else 0:.3g} > {rtol:.3g} at {worst}: "
        f"got {got[worst] if got.size else None} want {exp[worst] if exp.size else None}",
    )


def check_guards(chk: Checker, what: str, full, n: int) -> None:
    f = as_f64(full)
    chk.check(
        bool(np.all(f[:PAD] == SENTINEL) and np.all(f[PAD + n :] == SENTINEL)),
        f"{what}: wrote outside the buffer: guards {f[:PAD].tolist()} / {f[PAD + n :].tolist()}",
    )


# --------------------------------------------------------------------------------- scenarios
def scenario_correct(rank: int, world: int) -> dict:
    """allreduce (sum, avg) x buffer kinds x dtypes x sizes, async batches, broadcast, reduce, barrier."""
    import torch

    chk = Checker()
    nodes = hfreduce.get_num_nodes()
    kinds = [
        ("numpy", "float32"),
        ("numpy", "float16"),
        ("torch", "float32"),
        ("torch", "float16"),
        ("torch", "bfloat16"),
        ("shm-numpy", "float32"),
        ("shm-numpy", "float16"),
        ("shm-torch", "bfloat16"),
    ]
    sizes = QUICK_SIZES if QUICK else SIZES
    case = 0
    for kind, dtype in kinds:
        for n in sizes:
            for op in ("sum", "avg"):
                case += 1
                full, view = make_buffer(kind, dtype, n)
                fill(view, inputs(case, rank, n, dtype))
                assert hfreduce.allreduce(view, op=op) is None
                what = f"allreduce {op} {kind} {dtype} n={n}"
                compare(chk, what, as_f64(view), expected_sum(case, n, dtype, world, op), dtype, nodes, op)
                check_guards(chk, what, full, n)

    # Empty buffers and multi-dimensional ones (C and Fortran order) are fine too.
    hfreduce.allreduce(np.zeros(0, np.float32))
    for order in ("C", "F"):
        case += 1
        a = np.asarray(inputs(case, rank, 15, "float32").reshape(3, 5), dtype=np.float32, order=order)
        hfreduce.allreduce(a)
        exp = expected_sum(case, 15, "float32", world, "sum").reshape(3, 5)
        compare(
            chk,
            f"allreduce 3x5 order={order}",
            a.astype(np.float64).ravel(),
            exp.ravel(),
            "float32",
            nodes,
            "sum",
        )
    z = hfreduce.zeros((4, 33), torch.float16)
    chk.check(
        z.shape == (4, 33) and z.dtype == torch.float16 and bool((z == 0).all()), "zeros(torch.float16)"
    )
    z += 1
    hfreduce.allreduce(z)
    chk.check(bool((z == world).all()), f"allreduce of hfreduce.zeros()+1: {z.flatten()[:4].tolist()}")
    e = hfreduce.empty_like(np.ones((2, 9), np.float32))
    e[...] = rank
    hfreduce.allreduce(e, op="avg")
    chk.check(np.allclose(e, (world - 1) / 2), f"allreduce avg of empty_like: {e.ravel()[:4].tolist()}")

    # Several collectives in flight at once, of mixed kinds, dtypes and sizes.
    for batch in range(2 if QUICK else 4):
        works = []
        for j, (kind, dtype) in enumerate(kinds):
            case += 1
            n = sizes[(batch * 5 + j * 3) % len(sizes)]
            op = ("sum", "avg")[(batch + j) % 2]
            full, view = make_buffer(kind, dtype, n)
            fill(view, inputs(case, rank, n, dtype))
            w = hfreduce.allreduce(view, op=op, async_op=True)
            chk.check(isinstance(w, hfreduce.Handle), f"async allreduce returned {type(w).__name__}")
            works.append((w, case, kind, dtype, n, op, full, view))
        works[0][0].wait()
        hfreduce.wait_all([w[0] for w in works[1:]])
        for w, c, kind, dtype, n, op, full, view in works:
            chk.check(w.is_completed(), "Handle.is_completed() is False after wait()")
            what = f"async allreduce {op} {kind} {dtype} n={n}"
            compare(chk, what, as_f64(view), expected_sum(c, n, dtype, world, op), dtype, nodes, op)
            check_guards(chk, what, full, n)

    # broadcast from every root, reduce into every root.
    for root in range(world):
        for kind, dtype in (("numpy", "float32"), ("torch", "bfloat16"), ("shm-numpy", "float16")):
            for n in (sizes[1], sizes[-1]):
                case += 1
                full, view = make_buffer(kind, dtype, n)
                fill(view, inputs(case, rank, n, dtype))
                w = hfreduce.broadcast(view, root=root, async_op=(root % 2 == 1))
                if w is not None:
                    w.wait()
                got, want = as_f64(view), inputs(case, root, n, dtype)
                chk.check(
                    bool(np.array_equal(got, want)),
                    f"broadcast root={root} {kind} {dtype} n={n}: "
                    f"{np.count_nonzero(got != want)} elements differ from the root's",
                )
                check_guards(chk, f"broadcast root={root} {kind} {dtype} n={n}", full, n)
                case += 1
                full, view = make_buffer(kind, dtype, n)
                fill(view, inputs(case, rank, n, dtype))
                op = ("sum", "avg")[root % 2]
                hfreduce.reduce(view, root=root, op=op)
                what = f"reduce {op} root={root} {kind} {dtype} n={n}"
                if rank == root:
                    compare(
                        chk, what, as_f64(view), expected_sum(case, n, dtype, world, op), dtype, nodes, op
                    )
                else:
                    chk.check(
                        bool(np.array_equal(as_f64(view), inputs(case, rank, n, dtype))),
                        f"{what}: a non-root rank's buffer changed",
                    )
                check_guards(chk, what, full, n)

    # barrier: nobody leaves before everybody arrived (rank r arrives r*0.15 s late).
    time.sleep(0.15 * rank)
    open(os.path.join(OUT, f"barrier-{rank}"), "w").close()
    hfreduce.barrier()
    arrived = sorted(int(p.split("-")[1]) for p in os.listdir(OUT) if p.startswith("barrier-"))
    chk.check(
        arrived == list(range(world)), f"barrier returned on rank {rank} when only {arrived} had arrived"
    )
    hfreduce.barrier()
    return {"checks": chk.checks, "failures": chk.failures}


def scenario_errors(rank: int, world: int) -> dict:
    """Mismatched calls raise MismatchError on every rank; bad local input raises UsageError; both leave it usable."""
    import torch

    odd = int(os.environ.get("HFR_ODD", world - 1))
    me_odd = rank == odd
    out: dict = {"mismatch": {}, "usage": {}, "after": []}

    def usable(tag: str) -> None:
        a = np.full(1031, rank + 1, np.float32)
        hfreduce.allreduce(a)
        out["after"].append([tag, bool(np.all(a == world * (world + 1) / 2))])

    mismatches = {
        "count": lambda: hfreduce.allreduce(np.ones(1031 + me_odd, np.float32)),
        "dtype": lambda: hfreduce.allreduce(np.ones(1031, np.float16 if me_odd else np.float32)),
        "op": lambda: hfreduce.allreduce(np.ones(1031, np.float32), op="avg" if me_odd else "sum"),
        "root": lambda: hfreduce.broadcast(np.ones(1031, np.float32), root=1 if me_odd else 0),
        "kind": lambda: (hfreduce.broadcast if me_odd else hfreduce.allreduce)(np.ones(1031, np.float32)),
        "root-out-of-range": lambda: hfreduce.reduce(np.ones(9, np.float32), root=world),
        "async-count": lambda: hfreduce.allreduce(torch.ones(2053 + 2 * me_odd), async_op=True).wait(),
    }
    for name, call in mismatches.items():
        try:
            call()
            out["mismatch"][name] = None
        except Exception as exc:
            out["mismatch"][name] = err_info(exc)
        usable(name)

    bad_inputs = {
        "int64": lambda: np.ones(8, np.int64),
        "float64": lambda: np.ones(8, np.float64),
        "torch-int32": lambda: torch.ones(8, dtype=torch.int32),
        "torch-float64": lambda: torch.ones(8, dtype=torch.float64),
        "non-contiguous": lambda: np.ones(16, np.float32)[::2],
        "torch-non-contiguous": lambda: torch.ones(4, 6).t(),
        "read-only": lambda: np.frombuffer(bytes(32), np.float32),
        "not-a-buffer": lambda: [1.0, 2.0],
    }
    for name, make in bad_inputs.items():
        # broadcast copies, so it takes any dtype (scenario_collectives checks it bit for bit)
        takes_any = name in ("int64", "float64", "torch-int32", "torch-float64")
        for fn in ("allreduce", "reduce") if takes_any else ("allreduce", "broadcast", "reduce"):
            try:
                getattr(hfreduce, fn)(make())
                out["usage"][f"{fn}:{name}"] = None
            except Exception as exc:
                out["usage"][f"{fn}:{name}"] = err_info(exc)
    try:
        hfreduce.allreduce(np.ones(8, np.float32), op="max")
        out["usage"]["op=max"] = None
    except Exception as exc:
        out["usage"]["op=max"] = err_info(exc)
    usable("usage")
    return out


def scenario_crash(rank: int, world: int) -> dict:
    """HFR_VICTIM dies (exit / sigkill) or stalls (stall) mid-collective; survivors report what they raised."""
    victim, how = int(os.environ["HFR_VICTIM"]), os.environ["HFR_HOW"]
    a = np.ones(1031, np.float32)
    hfreduce.allreduce(a)
    out = {"warmup_ok": bool(np.all(a == world))}
    big = np.zeros(
        1 << 24, np.float32
    )  # 64 MiB, private, in 4 KiB chunks: ranks move in lockstep for seconds
    if rank == victim:
        if how == "stall":
            time.sleep(600)  # never calls the collective; the test kills it
        w = hfreduce.allreduce(big, async_op=True)
        time.sleep(0.05)
        if how == "exit":
            os._exit(3)
        os.kill(os.getpid(), signal.SIGKILL)
        w.wait()
    t0 = time.monotonic()
    try:
        hfreduce.allreduce(big)
        out["error"] = None
    except Exception as exc:
        out["error"] = err_info(exc)
    out["elapsed_s"] = time.monotonic() - t0
    try:
        hfreduce.allreduce(np.ones(8, np.float32))
        out["after"] = None
    except Exception as exc:
        out["after"] = err_info(exc)
    return out


def timed_call(call) -> tuple[dict | None, float, BaseException | None]:
    """(error info or None, seconds the call took, the exception) of ``call()``."""
    t0 = time.monotonic()
    try:
        call()
        return None, time.monotonic() - t0, None
    except Exception as exc:
        return err_info(exc) | {"at": time.time()}, time.monotonic() - t0, exc


def fault_victim(out: str, fault: str, start) -> None:
    """Start a collective (``start()``), then die (sigkill) or freeze (sigstop) in the middle of it."""
    start()
    time.sleep(0.01)  # long enough to be inside it, far shorter than its 64 MiB take
    with open(os.path.join(out, "fault-at"), "w") as f:
        f.write(repr(time.time()))
    os.kill(os.getpid(), signal.SIGKILL if fault == "sigkill" else signal.SIGSTOP)
    time.sleep(600)  # SIGSTOP: the test kills it


def scenario_faults(rank: int, world: int) -> dict:
    """A size and a dtype mismatch (MismatchError everywhere, still usable), then HFR_VICTIM is killed
    (HFR_FAULT=sigkill) or stopped (sigstop) mid-allreduce: survivors raise, later calls raise at once,
    and the error is left unhandled so the rank exits non-zero. Reports go to faults-<rank>.json."""
    odd, victim, fault = int(os.environ["HFR_ODD"]), int(os.environ["HFR_VICTIM"]), os.environ["HFR_FAULT"]
    out: dict = {"mismatch": {}}
    cases = {
        "size": lambda: hfreduce.allreduce(np.ones(1031 + (rank == odd), np.float32)),
        "dtype": lambda: hfreduce.allreduce(np.ones(1031, np.float16 if rank == odd else np.float32)),
    }
    for name, call in cases.items():
        out["mismatch"][name] = timed_call(call)[0]
    a = np.full(1031, rank + 1, np.float32)
    hfreduce.allreduce(a)
    out["usable"] = bool(np.all(a == world * (world + 1) / 2))
    write_result(rank, out, "faults")
    big = np.zeros(1 << 24, np.float32)  # 64 MiB, private, in 4 KiB chunks: the ranks move in lockstep
    if rank == victim:
        fault_victim(OUT, fault, lambda: hfreduce.allreduce(big, async_op=True))
    out["fault"], out["fault_s"], exc = timed_call(lambda: hfreduce.allreduce(big))
    out["after"], out["after_s"], _ = timed_call(lambda: hfreduce.allreduce(np.ones(8, np.float32)))
    write_result(rank, out, "faults")
    if exc is not None:
        raise exc  # as a training script would: unhandled, so the job fails
    return out


def scenario_collectives(rank: int, world: int) -> dict:
    """allgather / reduce_scatter / all_to_all / gather / scatter: list and tensor forms, numpy and torch,
    float and non-float dtypes (bit-exact), async; then each with one rank's size (or root) differing:
    MismatchError on every rank, and the communicator still works."""
    import torch

    chk = Checker()
    odd = int(os.environ.get("HFR_ODD", world - 1))

    def data(r: int, n: int, dtype: str, salt: int):
        rng = np.random.default_rng([salt, r])
        if dtype == "bool":
            return torch.from_numpy(rng.integers(0, 2, n).astype(bool))
        if dtype in ("int64", "uint8", "float64"):
            bits = rng.integers(0, 256, n * np.dtype(dtype).itemsize, dtype=np.uint8)
            return torch.from_numpy(bits.view(dtype).copy())  # arbitrary bit patterns, NaN payloads included
        return torch.from_numpy(rng.uniform(-2, 2, n).astype(np.float32)).to(getattr(torch, dtype))

    def same(a, b) -> bool:
        return (
            a.shape == b.shape
            and a.dtype == b.dtype
            and bool(torch.equal(a.view(torch.uint8), b.view(torch.uint8)))
        )

    salt = 0
    for dtype in ("float32", "bfloat16", "float16", "int64", "bool", "uint8", "float64"):
        for n in (1, 7, 1031, 5000):
            salt += 1
            mine = data(rank, n, dtype, salt)
            want = [data(r, n, dtype, salt) for r in range(world)]
            # broadcast of any dtype, from a root that moves with the case.
            b = mine.clone()
            hfreduce.broadcast(b, root=salt % world)
            chk.check(same(b, want[salt % world]), f"broadcast {dtype} n={n} root={salt % world}")
            # allgather: list form (numpy for float32), into-tensor form, async.
            outs = [torch.empty_like(mine) for _ in range(world)]
            if dtype == "float32":
                np_outs = [np.empty(n, np.float32) for _ in range(world)]
                hfreduce.allgather(np_outs, mine.numpy())
                chk.check(
                    all(np.array_equal(o, w.numpy()) for o, w in zip(np_outs, want, strict=True)),
                    f"allgather numpy {dtype} n={n}",
                )
            hfreduce.allgather(outs, mine)
            chk.check(
                all(same(o, w) for o, w in zip(outs, want, strict=True)), f"allgather list {dtype} n={n}"
            )
            flat = torch.empty(world * n, dtype=mine.dtype)
            h = hfreduce.allgather(flat, mine, async_op=True)
            h.wait()
            chk.check(same(flat, torch.cat(want)), f"allgather into-tensor {dtype} n={n}")
            # all_to_all: rank i's part j goes to rank j's part i.
            ins = [data(rank * world + j, n, dtype, salt + 100) for j in range(world)]
            a2a = [torch.empty_like(mine) for _ in range(world)]
            hfreduce.all_to_all(a2a, ins)
            chk.check(
                all(same(a2a[i], data(i * world + rank, n, dtype, salt + 100)) for i in range(world)),
                f"all_to_all {dtype} n={n}",
            )
            root = salt % world
            # gather to root, scatter from root (list and flat).
            g_out = [torch.empty_like(mine) for _ in range(world)] if rank == root else None
            hfreduce.gather(mine, g_out, root=root)
            if rank == root:
                chk.check(
                    all(same(o, w) for o, w in zip(g_out, want, strict=True)),
                    f"gather {dtype} n={n} root={root}",
                )
            s_in = torch.cat([data(100 + r, n, dtype, salt) for r in range(world)]) if rank == root else None
            s_out = torch.empty_like(mine)
            hfreduce.scatter(s_out, s_in, root=root)
            chk.check(same(s_out, data(100 + rank, n, dtype, salt)), f"scatter {dtype} n={n} root={root}")
            # reduce_scatter: floats only, sum and avg, list and tensor.
            if dtype in ("float32", "bfloat16", "float16"):
                parts = [data(rank * world + j, n, dtype, salt + 200) for j in range(world)]
                keep = [p.clone() for p in parts]
                for op in ("sum", "avg"):
                    out = torch.empty_like(mine)
                    src = parts if op == "sum" else torch.cat(parts)
                    hfreduce.reduce_scatter(out, src, op=op)
                    exact = sum(data(r * world + rank, n, dtype, salt + 200).double() for r in range(world))
                    exp = exact / world if op == "avg" else exact
                    tol = 1e-6 if dtype == "float32" else 2e-2
                    chk.check(
                        bool(torch.allclose(out.double(), exp, rtol=tol, atol=tol * world)),
                        f"reduce_scatter {op} {dtype} n={n}: max err {(out.double() - exp).abs().max():.3g}",
                    )
                chk.check(
                    all(same(p, k) for p, k in zip(parts, keep, strict=True)),
                    "reduce_scatter changed its inputs",
                )
    out: dict = {"checks": chk.checks, "failures": chk.failures, "mismatch": {}, "after": []}

    def usable(tag: str) -> None:
        a = np.full(1031, rank + 1, np.float32)
        hfreduce.allreduce(a)
        out["after"].append([tag, bool(np.all(a == world * (world + 1) / 2))])

    n = 33 + (rank == odd)
    mismatches = {
        "allgather": lambda: hfreduce.allgather(torch.empty(world * n), torch.ones(n)),
        "allgather-int64": lambda: hfreduce.allgather(
            torch.empty(world * n, dtype=torch.int64), torch.ones(n, dtype=torch.int64)
        ),
        "reduce_scatter": lambda: hfreduce.reduce_scatter(torch.empty(n), torch.ones(world * n)),
        "all_to_all": lambda: hfreduce.all_to_all(torch.empty(world * n), torch.ones(world * n)),
        "gather-root": lambda: hfreduce.gather(
            torch.ones(8), [torch.empty(8) for _ in range(world)], root=(1 if rank == odd else 0)
        ),
        "scatter": lambda: hfreduce.scatter(
            torch.empty(n), torch.ones(world * n) if rank == 0 else None, root=0
        ),
        "dtype": lambda: hfreduce.allgather(
            torch.empty(world * 8, dtype=torch.int32 if rank == odd else torch.float32),
            torch.ones(8, dtype=torch.int32 if rank == odd else torch.float32),
        ),
    }
    for name, call in mismatches.items():
        try:
            call()
            out["mismatch"][name] = None
        except Exception as exc:
            out["mismatch"][name] = err_info(exc)
        usable(name)
    return out


def shm_mappings() -> list[str]:
    """The /dev/shm hfreduce segments this process maps, as /proc/self/maps shows them."""
    segs = set()
    with open("/proc/self/maps") as f:
        for line in f:
            if "/dev/shm/hfreduce-" in line:
                segs.add(line.split(None, 5)[5].strip())
    return sorted(segs)


def scenario_shm(rank: int, world: int) -> dict:
    """Reports the segment this rank maps; with HFR_HOLD keeps allreducing until killed."""
    g = hfreduce.zeros(1 << 16, np.float32)
    g += 1
    hfreduce.allreduce(g)
    res = {"maps": shm_mappings(), "ok": bool(np.all(g == world))}
    if os.environ.get("HFR_HOLD") == "1":
        write_result(rank, res)
        while True:
            hfreduce.allreduce(g)
    return res


SCENARIOS = {
    "correct": scenario_correct,
    "errors": scenario_errors,
    "crash": scenario_crash,
    "faults": scenario_faults,
    "collectives": scenario_collectives,
    "shm": scenario_shm,
}


def main() -> None:
    scenario = SCENARIOS[sys.argv[1]]
    before_init = None
    try:
        hfreduce.allreduce(np.ones(4, np.float32))
    except Exception as exc:
        before_init = err_info(exc)
    if os.environ.get("HFR_INIT_DELAY_RANK") == str(env_rank()):
        # This rank is slow to start: it reaches the node-segment step of init only after 600 s.
        from hfreduce import _C

        real = _C.Communicator

        def slow_communicator(cfg):
            time.sleep(600)
            return real(cfg)

        _C.Communicator = slow_communicator
    init_timeout = os.environ.get("HFR_INIT_TIMEOUT_S")
    topo = hfreduce.init(timeout_s=float(init_timeout) if init_timeout else None)
    rank, world = topo.rank, topo.world_size
    res = {
        "rank": rank,
        "env_rank": env_rank(),
        "world_size": hfreduce.get_world_size(),
        "num_nodes": hfreduce.get_num_nodes(),
        "local_rank": hfreduce.get_local_rank(),
        "local_world_size": hfreduce.get_local_world_size(),
        "before_init": before_init,
    }
    try:
        res.update(scenario(rank, world))
    except Exception as exc:
        res["exception"] = err_info(exc) | {"traceback": traceback.format_exc()}
        write_result(rank, res)
        raise
    write_result(rank, res)
    hfreduce.finalize()
    res["finalized"] = not hfreduce.is_initialized()
    write_result(rank, res)


if __name__ == "__main__":
    main()
