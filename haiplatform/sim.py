"""Discrete-event simulator of a Fire-Flyer-sized cluster driven by the real scheduling policy.

``python -m haiplatform.sim`` generates a seeded synthetic trace (arrivals, sizes, runtimes,
priorities, users), replays it through :func:`haiplatform.scheduler.policy.schedule` (the same
function the gRPC scheduler calls), models the suspend/checkpoint/resume cost of every preemption,
and prints utilization, queueing delay per priority, preemptions and the policy's decision time.
It also times one cycle at the target scale (1,250 nodes, 10,000 queued jobs).
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import time
from dataclasses import dataclass, field, replace

from ffcommon.bench import Column, render_table
from haiplatform.scheduler.policy import (
    NodeView,
    PolicyConfig,
    Priority,
    QueuedJob,
    RunningJob,
    queue_order,
    schedule,
)

PRIORITY_MIX = [
    (Priority.LOW, 0.30),
    (Priority.NORMAL, 0.45),
    (Priority.ABOVE_NORMAL, 0.15),
    (Priority.HIGH, 0.10),
]
# (nodes, weight): most jobs are small, a few span hundreds of nodes.
SIZE_MIX = [
    (1, 0.45),
    (2, 0.15),
    (4, 0.12),
    (8, 0.12),
    (16, 0.07),
    (32, 0.05),
    (64, 0.025),
    (128, 0.015),
    (256, 0.005),
]


@dataclass
class TraceJob:
    """One synthetic job: when it arrives, how big, how long it computes, its priority and owner."""

    job_id: int
    user: str
    group: str
    priority: int
    nodes: int
    arrival_s: float
    work_s: float  # compute time it needs in total
    time_limit_s: float  # the user's (over)estimate, used by backfill


@dataclass
class SimConfig:
    """Cluster size, trace shape and protocol costs."""

    nodes: int = 1250
    jobs: int = 5000
    load: float = 0.95  # offered node-seconds / capacity
    median_work_s: float = 3600.0
    users: int = 60
    seed: int = 1
    suspend_s: float = 5.0  # grace period: time from the suspend command to freed nodes
    resume_overhead_s: float = 60.0  # relaunch + checkpoint load on every resume
    decay_s: float = 1800.0
    backfill: bool = True


def _pick(rng: random.Random, mix: list[tuple[object, float]]) -> object:
    r, acc = rng.random(), 0.0
    for value, weight in mix:
        acc += weight
        if r < acc:
            return value
    return mix[-1][0]


def make_trace(cfg: SimConfig) -> list[TraceJob]:
    """Seeded Poisson arrivals at the rate that offers ``load`` of the cluster's node-seconds."""
    rng = random.Random(cfg.seed)
    sizes = [(n, w) for n, w in SIZE_MIX if n <= cfg.nodes]
    mean_nodes = sum(n * w for n, w in sizes) / sum(w for _, w in sizes)
    mean_work = cfg.median_work_s * 1.6487  # lognormal(sigma=1) mean / median = e^0.5
    rate = cfg.load * cfg.nodes / (mean_nodes * mean_work)  # jobs per second
    t, jobs = 0.0, []
    for i in range(cfg.jobs):
        t += rng.expovariate(rate)
        work = min(cfg.median_work_s * rng.lognormvariate(0, 1), 48 * 3600)
        user = rng.randrange(cfg.users)
        jobs.append(
            TraceJob(
                job_id=i + 1, user=f"u{user}", group=f"g{user % 8}", priority=int(_pick(rng, PRIORITY_MIX)),
                nodes=int(_pick(rng, sizes)), arrival_s=t, work_s=work,
                time_limit_s=work * rng.uniform(1.2, 3.0),
            )
        )  # fmt: skip
    return jobs


@dataclass
class _Job:
    trace: TraceJob
    remaining_s: float
    priority: int
    state: str = "queued"
    nodes: tuple[str, ...] = ()
    started_at: float = 0.0
    first_started_at: float = 0.0
    first_wait_s: float | None = None
    epoch: int = 0  # bumps on each start/suspend so stale completion events are ignored
    overhead_left_s: float = 0.0  # resume overhead still to pay (not useful work)

    def account(self, ran_s: float) -> float:
        """Useful seconds out of ``ran_s`` of running (the resume overhead comes first)."""
        overhead = min(ran_s, self.overhead_left_s)
        self.overhead_left_s -= overhead
        return ran_s - overhead


@dataclass
class SimResult:
    """What one replay measured."""

    makespan_s: float
    utilization: float  # useful node-seconds / (nodes * makespan)
    occupancy: float  # held node-seconds (incl. suspend and resume overhead) / (nodes * makespan)
    steady_occupancy: float  # held nodes / all nodes, averaged while jobs still arrive (no drain tail)
    wait_s: dict[int, list[float]]  # priority -> queueing delays (submit to first start)
    preemptions: int
    decays: int
    cycles: int
    cycle_times_s: list[float] = field(default_factory=list)
    max_queue: int = 0
    completed: int = 0
    rule_violations: int = 0  # preemptions of an equal-or-higher priority job (must stay 0)


def simulate(cfg: SimConfig, trace: list[TraceJob] | None = None) -> SimResult:
    """Replay the trace through the real policy; every event time runs one scheduling cycle."""
    trace = trace if trace is not None else make_trace(cfg)
    node_views = [NodeView(f"n{i:04d}") for i in range(cfg.nodes)]
    pcfg = PolicyConfig(decay_s=cfg.decay_s, backfill=cfg.backfill)
    jobs = {t.job_id: _Job(t, t.work_s, t.priority) for t in trace}
    events: list[tuple[float, int, str, int, int]] = []  # (time, seq, kind, job, epoch)
    seq = 0

    def push(at: float, kind: str, job_id: int, epoch: int = 0) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (at, seq, kind, job_id, epoch))

    for t in trace:
        push(t.arrival_s, "arrive", t.job_id)
    queued: set[int] = set()
    holding: set[int] = set()  # running or suspending
    useful = held = 0.0
    preemptions = decays = cycles = max_queue = rule_violations = 0
    cycle_times: list[float] = []
    done = 0
    now = 0.0
    last_arrival = max((t.arrival_s for t in trace), default=0.0)
    held_nodes, prev_t, steady_area = 0, 0.0, 0.0
    while events and done < len(trace):
        now = events[0][0]
        if prev_t < last_arrival:
            steady_area += (min(now, last_arrival) - prev_t) * held_nodes
        prev_t = now
        while events and events[0][0] == now:
            _, _, kind, job_id, epoch = heapq.heappop(events)
            job = jobs[job_id]
            if kind == "arrive":
                queued.add(job_id)
            elif kind == "finish" and epoch == job.epoch and job.state == "running":
                useful += job.account(now - job.started_at) * len(job.nodes)
                held += (now - job.started_at) * len(job.nodes)
                holding.discard(job_id)
                held_nodes -= len(job.nodes)
                job.state = "done"
                done += 1
            elif kind == "suspended" and epoch == job.epoch and job.state == "suspending":
                # Work done up to the suspend command was checkpointed; nodes free now.
                held += (now - job.started_at) * len(job.nodes)
                holding.discard(job_id)
                held_nodes -= len(job.nodes)
                job.state = "queued"
                job.remaining_s += cfg.resume_overhead_s
                job.overhead_left_s += cfg.resume_overhead_s
                queued.add(job_id)
        running_views = [
            RunningJob(j, jobs[j].trace.user, jobs[j].trace.group, jobs[j].priority, jobs[j].nodes,
                       jobs[j].started_at, jobs[j].first_started_at, jobs[j].state == "suspending",
                       jobs[j].trace.time_limit_s)
            for j in holding
        ]  # fmt: skip
        queue_views = [
            QueuedJob(j, jobs[j].trace.user, jobs[j].trace.group, jobs[j].priority, jobs[j].trace.nodes,
                      jobs[j].trace.arrival_s, jobs[j].trace.time_limit_s)
            for j in queued
        ]  # fmt: skip
        max_queue = max(max_queue, len(queue_views))
        t0 = time.perf_counter()
        d = schedule(node_views, running_views, queue_views, now, pcfg)
        cycle_times.append(time.perf_counter() - t0)
        cycles += 1
        for job_id in d.decay:
            jobs[job_id].priority = int(Priority.NORMAL)
            decays += 1
        for victim, for_job in d.preempt:
            job = jobs[victim]
            if job.priority >= jobs[for_job].priority:
                rule_violations += 1  # must never happen: only strictly lower priorities are preempted
            ran = now - job.started_at
            useful += job.account(ran) * len(job.nodes)
            held += ran * len(job.nodes)
            job.remaining_s = max(0.0, job.remaining_s - ran)
            job.state = "suspending"
            job.epoch += 1
            # Nodes stay held (not useful) for the grace period while it checkpoints.
            job.started_at = now
            push(now + cfg.suspend_s, "suspended", victim, job.epoch)
            preemptions += 1
        for job_id, nodes in d.start:
            job = jobs[job_id]
            queued.discard(job_id)
            holding.add(job_id)
            held_nodes += len(nodes)
            job.state, job.nodes, job.started_at = "running", nodes, now
            job.epoch += 1
            push(now + job.remaining_s, "finish", job_id, job.epoch)
            if job.first_wait_s is None:
                job.first_wait_s = now - job.trace.arrival_s
                job.first_started_at = now
                if job.priority == Priority.ABOVE_NORMAL:
                    push(now + cfg.decay_s, "tick", job_id)  # a cycle when it decays
    makespan = now
    waits: dict[int, list[float]] = {int(p): [] for p in Priority}
    for job in jobs.values():
        if job.first_wait_s is not None:
            waits[job.trace.priority].append(job.first_wait_s)
    cap = cfg.nodes * makespan if makespan else 1.0
    steady = steady_area / (cfg.nodes * last_arrival) if last_arrival else 0.0
    return SimResult(
        makespan,
        useful / cap,
        held / cap,
        steady,
        waits,
        preemptions,
        decays,
        cycles,
        cycle_times,
        max_queue,
        done,
        rule_violations,
    )


def scale_cycle_times(
    nodes: int = 1250, queued: int = 10_000, repeats: int = 30, seed: int = 2, fair_share: bool = False
) -> dict[str, list[float]]:
    """Time one policy cycle on a full cluster with ``queued`` waiting jobs (HIGH ones force a preemption
    search), and, as the floor in the same run, just sorting that queue; ``fair_share`` gives the 60
    users decayed usage (one group, so every place is re-ordered by it)."""
    rng = random.Random(seed)
    node_views = [NodeView(f"n{i:04d}") for i in range(nodes)]
    running, i, job_id = [], 0, 0
    while i < nodes - 3:  # leave 3 nodes free so backfill has something to do
        n = min(int(_pick(rng, SIZE_MIX)), nodes - 3 - i)
        job_id += 1
        prio = int(_pick(rng, PRIORITY_MIX))
        running.append(
            RunningJob(job_id, f"u{rng.randrange(60)}", "g", prio, tuple(f"n{k:04d}" for k in range(i, i + n)),
                       1000.0 - rng.random() * 900, 100.0, False, rng.uniform(600, 7200))
        )  # fmt: skip
        i += n
    queue = [
        QueuedJob(job_id + k + 1, f"u{rng.randrange(60)}", "g", int(_pick(rng, PRIORITY_MIX)), int(_pick(rng, SIZE_MIX)),
                  rng.random() * 1000, rng.uniform(600, 7200))
        for k in range(queued)
    ]  # fmt: skip
    cfg = PolicyConfig(quotas={("user", "u1", 0): 64, ("group", "g", int(Priority.HIGH)): 100_000})
    if fair_share:
        cfg.usage = {f"u{k}": rng.random() * 1e6 for k in range(60)}
    out: dict[str, list[float]] = {"policy": [], "sort only": []}
    for _ in range(repeats):
        t0 = time.perf_counter()
        schedule(node_views, running, queue, 1000.0, cfg)
        out["policy"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        queue_order(queue)
        out["sort only"].append(time.perf_counter() - t0)
    return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def format_report(cfg: SimConfig, res: SimResult, scale: dict[str, list[float]] | None) -> str:
    """The tables ``python -m haiplatform.sim`` prints."""
    lines = [
        f"cluster {cfg.nodes} nodes x 8 GPUs, {cfg.jobs} jobs, offered load {cfg.load:.2f}, seed {cfg.seed}, "
        f"backfill {'on' if cfg.backfill else 'off'}, suspend {cfg.suspend_s:.0f} s, resume overhead {cfg.resume_overhead_s:.0f} s",
        f"makespan {res.makespan_s / 3600:.1f} h   utilization {100 * res.utilization:.1f} %   occupancy "
        f"{100 * res.occupancy:.1f} %   occupancy while arriving {100 * res.steady_occupancy:.1f} %   preemptions {res.preemptions}   decays {res.decays}   max queue {res.max_queue}",
        "",
    ]
    minutes = Column("", 12, fmt=lambda s: f"{s / 60:.1f} m")
    cols = [Column("priority", 13, "<"), Column("jobs", 6), replace(minutes, header="mean wait"),
            replace(minutes, header="p50 wait"), replace(minutes, header="p95 wait")]  # fmt: skip
    waits = [(p, res.wait_s[int(p)]) for p in sorted(Priority, reverse=True)]
    rows = [[p.name, len(w), statistics.mean(w), _pct(w, 0.5), _pct(w, 0.95)] for p, w in waits if w]
    lines += render_table(cols, rows)
    ct = res.cycle_times_s
    lines += [
        "",
        f"simulation cycles {res.cycles}: decision time median {1e3 * _pct(ct, 0.5):.2f} ms, p99 {1e3 * _pct(ct, 0.99):.2f} ms",
    ]
    if scale:
        lines += ["", *cycle_table(scale, "one cycle, 1250 nodes x 10000 queued", 40)]
    return "\n".join(lines)


def cycle_table(scale: dict[str, list[float]], title: str, name_width: int) -> list[str]:
    """Per variant of :func:`scale_cycle_times`: median and p99 cycle time, and the median's ratio to
    ``sort only`` (the floor: ordering the queue and nothing else)."""
    ms = Column("", 10, fmt=lambda s: f"{1e3 * s:.1f}ms")
    cols = [Column(title, name_width, "<"), replace(ms, header="median"), replace(ms, header="p99"),
            Column("ratio", 8, fmt=".2f")]  # fmt: skip
    base = statistics.median(scale["sort only"])
    rows = [
        [name, statistics.median(v), _pct(v, 0.99), statistics.median(v) / base] for name, v in scale.items()
    ]
    return render_table(cols, rows)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; see the module docstring."""
    p = argparse.ArgumentParser(prog="python -m haiplatform.sim", description=__doc__)
    p.add_argument("--nodes", type=int, default=1250)
    p.add_argument("--jobs", type=int, default=5000)
    p.add_argument("--load", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-backfill", action="store_true")
    p.add_argument("--no-scale", action="store_true", help="skip the 1250 x 10000 cycle timing")
    args = p.parse_args(argv)
    for name in ("nodes", "jobs"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be a positive integer")
    if not 0 < args.load <= 10:
        p.error("--load must be in (0, 10]")
    cfg = SimConfig(
        nodes=args.nodes, jobs=args.jobs, load=args.load, seed=args.seed, backfill=not args.no_backfill
    )
    res = simulate(cfg)
    print(format_report(cfg, res, None if args.no_scale else scale_cycle_times()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
