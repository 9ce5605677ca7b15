"""The benchmark's report: the nccl-tests-style table and summary of a result dict (as ``--json`` writes it).

Rank 0 prints it after a sweep; kept apart so a saved JSON can be rendered without MPI or torch.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ffcommon.bench import Column, render_table

_REF_BYTES = 64 << 20  # the size at which the summary quotes ratios


def _fmt_size(b: int) -> str:
    for unit, s in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if b >= s and b % s == 0:
            return f"{b // s}{unit}"
    return str(b)


def _ratio(row: dict, a: str, b: str) -> str:
    if a in row and b in row and row[b]["busbw_gbps"] > 0:
        return f"{row[a]['busbw_gbps'] / row[b]['busbw_gbps']:.2f}"
    return "n/a"


def table(res: dict) -> str:
    """The nccl-tests-style table of a result dict (as written by ``--json``)."""
    impls = res["impls"]
    n = res["np"]
    peers = [p for p in ("mpi", "gloo") if p in impls]
    hfrs = [h for h in ("hfr-shm", "hfr") if h in impls]
    ratio_cols = [(h, p) for p in peers for h in hfrs]
    lines = [
        f"# HFReduce {res.get('op', 'allreduce')} benchmark: np={n}, {res['nodes']} node(s) x {res['local_world_size']} local ranks, "
        f"dtype {res['dtype']}, kernels {res['kernel_isa']}, check {'on' if res['checked'] else 'off'}",
        f"# memcpy ceiling (numpy copy, one core, {_fmt_size(res['memcpy_bytes'])}): {res['memcpy_gbps']:.2f} GB/s",
        "# time = median over iterations of the slowest rank (us); algbw = bytes/time; busbw = algbw*"
        + ("2(n-1)/n" if res.get("op", "allreduce") == "allreduce" else "(n-1)/n")
        + " (GB/s)",
        f"# load {res['load'][0]:.2f}; sweep took {res['wall_s']:.1f} s",
    ]
    lead = [Column("size", 10), Column("count", 11), Column("type", 9)]
    groups = [Column("", c.width) for c in lead] + [
        Column(f"---- {i} ----", 28, "^", gap="  ") for i in impls
    ]
    cols = list(lead)
    for _ in impls:
        cols += [
            Column("time(us)", 10, fmt=".1f", gap="  "),
            Column("algbw", 9, fmt=".3f"),
            Column("busbw", 9, fmt=".3f"),
        ]
    cols += [Column(f"{h}/{p}", 14) for h, p in ratio_cols]
    rows = []
    for row in res["rows"]:
        cells = [row["bytes"], row["count"], row["dtype"]]
        for impl in impls:
            c = row[impl]
            cells += [c["time_us"], c["algbw_gbps"], c["busbw_gbps"]]
        rows.append(cells + [_ratio(row, h, p) for h, p in ratio_cols])
    lines += render_table(groups, [])
    lines += render_table(cols, rows)
    ref = [r for r in res["rows"] if r["bytes"] <= _REF_BYTES]
    if ref and hfrs:
        r = ref[-1]
        parts = [
            f"# at {_fmt_size(r['bytes'])}: busbw "
            + ", ".join(f"{i} {r[i]['busbw_gbps']:.2f}" for i in impls)
        ]
        for h in hfrs:
            vs = [f"{h}/{p} {_ratio(r, h, p)}" for p in peers]
            vs.append(
                f"{h}/memcpy {r[h]['busbw_gbps'] / res['memcpy_gbps']:.2f}" if res["memcpy_gbps"] else ""
            )
            parts.append("#   " + ", ".join(v for v in vs if v))
        lines += parts
    return "\n".join(lines)


def emit_result(
    shape: dict[str, Any],
    dtype: str,
    ceiling: float,
    impls: list[str],
    rows: list[dict[str, Any]],
    t_start: float,
    opts: dict[str, Any],
) -> None:
    """Rank 0's end of a sweep: print the table, and write the same result as JSON when asked."""
    import hfreduce

    res = {
        **shape,
        "dtype": dtype,
        "kernel_isa": hfreduce.kernel_isa(),
        "memcpy_gbps": ceiling,
        "memcpy_bytes": opts["memcpy_bytes"],
        "checked": opts["check"],
        "impls": impls,
        "rows": rows,
        "wall_s": time.perf_counter() - t_start,
        "load": list(os.getloadavg()),
    }
    print(table(res), flush=True)
    if opts["json"]:
        with open(opts["json"], "w") as f:
            json.dump(res, f, indent=1)
