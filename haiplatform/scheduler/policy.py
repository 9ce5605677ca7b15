"""The scheduling policy: a pure function from cluster state to decisions (start, preempt, decay).

Both the gRPC scheduler and the simulator (``haiplatform.sim``) call :func:`schedule`; it reads
nothing but its arguments and changes none of them, so one cycle can be replayed and timed.

Rules (HAI-Platform, fireflyer-facts section 3):
- higher priority first, first come first served within a priority;
- gang allocation of whole nodes: all of a job's nodes or none;
- a queued job preempts (suspends) only running jobs of strictly lower priority, so a job is never
  preempted for the same user's job at the same priority; victims are the lowest priority, then
  the most recently started (least work lost);
- ABOVE_NORMAL decays to NORMAL ``decay_s`` after the job first started;
- per-user and per-group node quotas, optionally per priority;
- EASY backfill: once the head of the queue is blocked, a later job may start on free nodes only
  if it does not delay the head (it has a time limit that ends before the head's reserved start,
  or it uses only nodes the head will not need then);
- with backfill on, a job needing more nodes than are schedulable at all (the rest are down,
  drained or unhealthy) cannot start whatever ends: it waits (``Resources``) without becoming the
  head, so it blocks nobody;
- an array runs at most ``array_limit`` of its tasks at once;
- fair share (``PolicyConfig.usage``): within one priority, the jobs of one quota group keep their
  group's places in the FIFO order, but fill them in order of their users' decayed usage (least first).

Jobs that do not start get a pending reason in :attr:`Decisions.waiting` (Slurm's names).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum
from operator import attrgetter


class Priority(IntEnum):
    """Job priority; the values match ``scheduler.proto``."""

    LOW = 10
    NORMAL = 20
    ABOVE_NORMAL = 30
    HIGH = 40


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node as the policy sees it; ``schedulable`` = up, healthy and not drained."""

    name: str
    schedulable: bool = True


@dataclass(frozen=True, slots=True)
class RunningJob:
    """A job holding nodes: running, or suspending (its nodes are freed soon)."""

    job_id: int
    user: str
    group: str
    priority: int
    nodes: tuple[str, ...]
    started_at: float  # start of the current run, unix s
    first_started_at: float  # start of the first run, unix s (decay clock)
    suspending: bool = False
    time_limit_s: float = 0.0  # 0 = unknown end (no backfill reservation through it)
    array_id: int = 0  # the array it is a task of; 0 = none


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """A job waiting for nodes."""

    job_id: int
    user: str
    group: str
    priority: int
    nodes: int
    submitted_at: float  # unix s; FIFO key within a priority
    time_limit_s: float = 0.0
    array_id: int = 0  # the array it is a task of; 0 = none
    array_limit: int = 0  # at most this many of the array's tasks running; 0 = no limit


@dataclass(slots=True)
class PolicyConfig:
    """Tunables; ``quotas`` maps (scope "user"/"group", name, priority or 0 for all) to max nodes;
    ``usage`` maps a user to decayed node-seconds (fair share; empty = plain FIFO)."""

    decay_s: float = 1800.0
    quotas: dict[tuple[str, str, int], int] = field(default_factory=dict)
    usage: dict[str, float] = field(default_factory=dict)
    backfill: bool = True
    preempt: bool = True


@dataclass(slots=True)
class Decisions:
    """What one cycle decided; the caller applies it."""

    start: list[tuple[int, tuple[str, ...]]] = field(default_factory=list)  # (job, nodes in rank order)
    preempt: list[tuple[int, int]] = field(default_factory=list)  # (victim job, for queued job)
    decay: list[int] = field(default_factory=list)  # running jobs demoted ABOVE_NORMAL -> NORMAL
    # Queued jobs that did not start, by reason: Resources (no nodes for it now), QuotaGroup, ArrayTaskLimit;
    # any other queued job that did not start waits behind higher-priority or older jobs (Priority).
    waiting: dict[int, str] = field(default_factory=dict)


def effective_priority(job: RunningJob, now: float, decay_s: float) -> int:
    """The job's priority after ABOVE_NORMAL decay."""
    if job.priority == Priority.ABOVE_NORMAL and now - job.first_started_at >= decay_s:
        return int(Priority.NORMAL)
    return job.priority


_FIFO_KEY = attrgetter("submitted_at", "job_id")
_PRIORITY_KEY = attrgetter("priority")


def queue_order(queue: list[QueuedJob], usage: dict[str, float] | None = None) -> list[QueuedJob]:
    """Priority high to low, then first come first served (then job id, for determinism); with
    ``usage``, each (priority, group)'s places go to its users' jobs least decayed usage first."""
    order = sorted(queue, key=_FIFO_KEY)
    order.sort(key=_PRIORITY_KEY, reverse=True)  # stable: FIFO within a priority
    if not usage:
        return order
    places: dict[tuple[int, str], list[int]] = {}
    for i, q in enumerate(order):
        places.setdefault((q.priority, q.group), []).append(i)
    out = list(order)
    for idx in places.values():
        if len(idx) < 2:
            continue
        members = [order[i] for i in idx]
        if len({m.user for m in members}) < 2:
            continue  # one user: FIFO already
        members.sort(key=lambda q: usage.get(q.user, 0.0))  # stable: FIFO within equal usage
        for i, m in zip(idx, members, strict=True):
            out[i] = m
    return out


def schedule(
    nodes: list[NodeView],
    running: list[RunningJob],
    queue: list[QueuedJob],
    now: float,
    config: PolicyConfig,
) -> Decisions:
    """One scheduling cycle: which queued jobs start where, which running jobs to suspend, which decay."""
    out = Decisions()
    schedulable = {n.name for n in nodes if n.schedulable}
    busy: set[str] = set()
    pending: list[str] = []  # schedulable nodes of suspending jobs: free soon
    usage: dict[tuple[str, str, int], int] = {}
    quotas = config.quotas
    victims: list[tuple[int, float, RunningJob]] = []
    for r in running:
        prio = effective_priority(r, now, config.decay_s)
        if prio != r.priority:
            out.decay.append(r.job_id)
        busy.update(r.nodes)
        if r.suspending:
            pending.extend(n for n in r.nodes if n in schedulable)
        elif config.preempt:
            victims.append((prio, -r.started_at, r))
        if quotas:
            n = len(r.nodes)
            for key in (
                ("user", r.user, 0),
                ("user", r.user, prio),
                ("group", r.group, 0),
                ("group", r.group, prio),
            ):
                usage[key] = usage.get(key, 0) + n
    free = [n.name for n in nodes if n.schedulable and n.name not in busy]
    array_running: dict[int, int] = {}
    for r in running:
        if r.array_id:
            array_running[r.array_id] = array_running.get(r.array_id, 0) + 1
    waiting = out.waiting
    victims.sort(key=lambda v: (v[0], v[1]))
    taken_victims: set[int] = set()

    def over_quota(q: QueuedJob) -> bool:
        for key in (
            ("user", q.user, 0),
            ("user", q.user, q.priority),
            ("group", q.group, 0),
            ("group", q.group, q.priority),
        ):
            limit = quotas.get(key)
            if limit is not None and usage.get(key, 0) + q.nodes > limit:
                return True
        return False

    def charge(q: QueuedJob) -> None:
        for key in (
            ("user", q.user, 0),
            ("user", q.user, q.priority),
            ("group", q.group, 0),
            ("group", q.group, q.priority),
        ):
            usage[key] = usage.get(key, 0) + q.nodes

    head_blocked = False
    shadow = math.inf  # when the head is expected to start
    extra = 0  # nodes free now that the head will not need at `shadow`
    for q in queue_order(queue, config.usage):
        if quotas and over_quota(q):
            waiting[q.job_id] = "QuotaGroup"
            continue
        if q.array_limit and array_running.get(q.array_id, 0) >= q.array_limit:
            waiting[q.job_id] = "ArrayTaskLimit"
            continue
        if not head_blocked:
            if len(free) >= q.nodes:
                out.start.append((q.job_id, tuple(free[: q.nodes])))
                del free[: q.nodes]
                if quotas:
                    charge(q)
                if q.array_id:
                    array_running[q.array_id] = array_running.get(q.array_id, 0) + 1
                continue
            waiting[q.job_id] = "Resources"
            if config.backfill and q.nodes > len(schedulable):
                continue  # cannot start until nodes come back: no reservation, blocks nobody
            # Blocked: wait for suspending jobs' nodes, or suspend lower-priority victims.
            head_blocked = True
            have = len(free) + len(pending)
            chosen: list[RunningJob] = []
            if have < q.nodes:
                for prio, _neg_start, v in victims:
                    if prio >= q.priority:
                        break
                    if v.job_id in taken_victims:
                        continue
                    gain = sum(1 for n in v.nodes if n in schedulable)
                    if gain == 0:
                        continue
                    chosen.append(v)
                    have += gain
                    if have >= q.nodes:
                        break
            if have >= q.nodes:
                for v in chosen:
                    taken_victims.add(v.job_id)
                    out.preempt.append((v.job_id, q.job_id))
                # Nodes are being freed for q: it starts within the suspend grace; backfill only
                # on free nodes it will not take.
                need_from_free = max(0, q.nodes - len(pending) - sum(len(v.nodes) for v in chosen))
                shadow = now
                extra = len(free) - need_from_free
                pending = []
                continue
            shadow, extra = _reservation(q, free, running, schedulable)
            continue
        # Behind a blocked head: backfill only what does not delay it.
        if not config.backfill or not free:
            break
        if q.nodes > len(free):
            continue
        ends_before = q.time_limit_s > 0 and shadow != math.inf and now + q.time_limit_s <= shadow
        if ends_before or q.nodes <= extra:
            out.start.append((q.job_id, tuple(free[: q.nodes])))
            del free[: q.nodes]
            if not ends_before:
                extra -= q.nodes
            if quotas:
                charge(q)
            if q.array_id:
                array_running[q.array_id] = array_running.get(q.array_id, 0) + 1
    return out


def _reservation(
    head: QueuedJob, free: list[str], running: list[RunningJob], schedulable: set[str]
) -> tuple[float, int]:
    """EASY backfill reservation: (time the head can start, free nodes it will not need then).

    Running jobs without a time limit have no known end: behind a head that waits for them the
    reservation is unknown (inf) and nothing backfills, the safe choice that never delays it.
    """
    ends = sorted(
        (r.started_at + r.time_limit_s, sum(1 for n in r.nodes if n in schedulable))
        for r in running
        if r.time_limit_s > 0 and not r.suspending
    )
    have = len(free)
    for end, gain in ends:
        have += gain
        if have >= head.nodes:
            return end, min(len(free), have - head.nodes)
    return math.inf, 0
