"""``haictl bench sched``: job submission rate through the real gRPC API and the policy's cycle time
(10,000 and 100,000 queued, with fair share), and the cost of dependency and array handling per cycle.

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


def control_times(repeats: int = 10, queued: int = 10_000, seed: int = 3) -> dict[str, list[float]]:
    """Seconds per cycle of the scheduler's job-control work at ``queued`` jobs: the dependency pass
    in its worst case (every queued job has two dependencies on other jobs, all still waiting, and
    all re-checked through the same ``dependency_state`` the scheduler calls; the scheduler itself
    re-checks only the jobs whose named jobs changed state since), and the policy over one
    ``queued``-task array limited to 8 running, on 1250 nodes of which 8 are free."""
    import random

    from haiplatform.scheduler.dependencies import dependency_state
    from haiplatform.scheduler.policy import NodeView, PolicyConfig, QueuedJob, RunningJob, schedule

    rng = random.Random(seed)
    status = {j: ("running" if j % 3 else "queued", j % 3 != 0) for j in range(1, queued + 1)}
    deps = [
        [("afterok", rng.randrange(1, queued + 1)), ("after", rng.randrange(1, queued + 1))]
        for _ in range(queued)
    ]
    lookup = status.get
    nodes = [NodeView(f"n{i:04d}") for i in range(1250)]
    running = [RunningJob(10**6 + i, "u", "g", 20, (f"n{i:04d}",), 0.0, 0.0) for i in range(1242)]
    array = [QueuedJob(k + 1, "u", "g", 20, 1, float(k), 0.0, 1, 8) for k in range(queued)]
    out: dict[str, list[float]] = {"dependency pass": [], "array %8 cycle": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        for d in deps:
            dependency_state(d, lookup)
        out["dependency pass"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        decisions = schedule(nodes, running, array, 1000.0, PolicyConfig())
        out["array %8 cycle"].append(time.perf_counter() - t0)
        assert len(decisions.start) == 8
    return out


@click.command("sched")
@click.option("--jobs", "n", type=int, default=1000, show_default=True, help="submissions per measurement")
@click.option("--repeats", type=int, default=3, show_default=True)
def sched_bench(n: int, repeats: int) -> None:
    """Submission rate through the scheduler API; one policy cycle at 1,250 nodes x 10,000 (also with fair
    share) and 100,000 queued; the per-cycle cost of dependencies and array limits.

    \b
    Example:
      haictl bench sched --jobs 2000
    """
    from haiplatform.sim import scale_cycle_times

    rates = submission_rates(n, repeats)
    reps = max(10, repeats * 5)
    scales = {
        f"cycle: 1250 nodes, {queued} queued" + (", fair share" if fair else ""): scale_cycle_times(
            queued=queued, repeats=reps if queued <= 10_000 else max(5, repeats), fair_share=fair
        )
        for queued, fair in ((10_000, False), (10_000, True), (100_000, False))
    }
    control = control_times(repeats=reps)
    for line in report_lines(rates, scales, os.getloadavg()[0], os.cpu_count() or 0, control):
        click.echo(line)


def report_lines(
    rates: list[tuple[str, int, float]],
    scales: dict[str, dict[str, list[float]]],
    load: float,
    cores: int,
    control: dict[str, list[float]] | None = None,
) -> list[str]:
    """The tables: calls/s per (what, threads); then, per cycle scenario (title -> variant -> times in
    s), cycle times vs ``sort only``; then the job-control costs per cycle."""
    from haiplatform.sim import _pct

    ms = Column("", 10, fmt=lambda s: f"{1e3 * s:.1f}ms")
    lines = [f"load: {load:.2f} (1-min), {cores} cores"]
    lines += render_table(
        [Column("what", 32, "<"), Column("threads", 8), Column("calls/s", 10, fmt=".0f")], rates
    )
    for title, scale in scales.items():
        base = statistics.median(scale["sort only"])
        cols = [Column(title, 44, "<"), replace(ms, header="median"),
                replace(ms, header="p99"), Column("ratio", 8, fmt=".2f")]  # fmt: skip
        rows = [
            [name, statistics.median(v), _pct(v, 0.99), statistics.median(v) / base]
            for name, v in scale.items()
        ]
        table = render_table(cols, rows)
        lines += ["\n" + table[0], *table[1:]]
    if control:
        cols = [
            Column("job control: 10000 queued (worst case)", 44, "<"),
            replace(ms, header="median"),
            replace(ms, header="p99"),
        ]
        rows = [[name, statistics.median(v), _pct(v, 0.99)] for name, v in control.items()]
        table = render_table(cols, rows)
        lines += ["\n" + table[0], *table[1:]]
    return lines
