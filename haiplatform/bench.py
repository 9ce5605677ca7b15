"""``haictl bench sched``: job submission rate through the real gRPC API and the policy's cycle time.

Peers measured in the same run: a no-op authenticated gRPC call (WhoAmI) on the same server, and
the store's insert rate without gRPC (the two costs a submission is made of); for the cycle, just
sorting the queue (the floor of any priority/FIFO policy).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import click

from ffcommon.bench import Column, render_table
from ffcommon.ports import free_port, wait_for_port


def _rate(n: int, threads: int, fn) -> float:
    """Calls per second of ``fn(i)`` over ``n`` calls spread on ``threads`` threads."""
    per = n // threads
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(per):
                fn(k * per + i)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return per * threads / (time.perf_counter() - t0)


def submission_rates(
    n: int = 1000, repeats: int = 3, threads: tuple[int, ...] = (1, 4)
) -> list[tuple[str, int, float]]:
    """(what, client threads, median calls/s) for submit, WhoAmI and raw store inserts."""
    from haiplatform.scheduler.store import JobRecord, Store
    from haiplatform.scheduler_client import SchedulerClient

    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "haiplatform.scheduler", "--port", str(port), "--db", f"{tmp}/s.db"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
        )  # fmt: skip
        try:
            wait_for_port("127.0.0.1", port, 30, proc)
            token = Path(tmp, "admin.token").read_text().strip()
            client = SchedulerClient(f"127.0.0.1:{port}", token)
            spec = {"command": "python train.py", "workdir": "/tmp", "nodes": 1}
            client.submit(spec)  # warm up the channel
            for t in threads:
                sub = [_rate(n, t, lambda _i: client.submit(spec)) for _ in range(repeats)]
                who = [_rate(n, t, lambda _i: client.whoami()) for _ in range(repeats)]
                rows.append(("submit via gRPC (SQLite)", t, statistics.median(sub)))
                rows.append(("peer: no-op call (WhoAmI)", t, statistics.median(who)))
            client.close()
        finally:
            proc.terminate()
            proc.wait(10)
        store = Store.sqlite(f"{tmp}/raw.db")
        job = JobRecord(
            name="x", user="u", group="g", command="c", workdir="/tmp", env={}, nodes=1, ranks_per_node=1,
            priority=20, base_priority=20, time_limit_s=0, state="queued", reason="", submitted_at=0.0,
        )  # fmt: skip
        raw = [
            _rate(n, 1, lambda _i: store.insert_job(job, time.time(), "submitted")) for _ in range(repeats)
        ]
        rows.append(("peer: store insert, no gRPC", 1, statistics.median(raw)))
        store.close()
    return rows


@click.command("sched")
@click.option("--jobs", "n", type=int, default=1000, show_default=True, help="submissions per measurement")
@click.option("--repeats", type=int, default=3, show_default=True)
def sched_bench(n: int, repeats: int) -> None:
    """Submission rate through the scheduler API and one policy cycle at 1,250 nodes x 10,000 queued.

    \b
    Example:
      haictl bench sched --jobs 2000
    """
    from haiplatform.sim import scale_cycle_times

    rates = submission_rates(n, repeats)
    scale = scale_cycle_times(repeats=max(10, repeats * 5))
    for line in report_lines(rates, scale, os.getloadavg()[0], os.cpu_count() or 0):
        click.echo(line)


def report_lines(
    rates: list[tuple[str, int, float]], scale: dict[str, list[float]], load: float, cores: int
) -> list[str]:
    """The two tables: calls/s per (what, threads), then cycle times (s) per variant vs ``sort only``."""
    from haiplatform.sim import _pct

    ms = Column("", 10, fmt=lambda s: f"{1e3 * s:.1f}ms")
    lines = [f"load: {load:.2f} (1-min), {cores} cores"]
    lines += render_table(
        [Column("what", 32, "<"), Column("threads", 8), Column("calls/s", 10, fmt=".0f")], rates
    )
    base = statistics.median(scale["sort only"])
    cols = [Column("cycle: 1250 nodes, 10000 queued", 32, "<"), replace(ms, header="median"),
            replace(ms, header="p99"), Column("ratio", 8, fmt=".2f")]  # fmt: skip
    rows = [
        [name, statistics.median(v), _pct(v, 0.99), statistics.median(v) / base] for name, v in scale.items()
    ]
    table = render_table(cols, rows)
    return [*lines, "\n" + table[0], *table[1:]]
