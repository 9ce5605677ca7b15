"""The JSON forms of nodes and jobs that the page, the API and ``/metrics`` share.

Kept apart from the HTTP server so that the metrics collector and the server both import it and
not each other.
"""

from __future__ import annotations

from typing import Any

from haiplatform.scheduler.core import NodeState
from haiplatform.scheduler.policy import Priority
from haiplatform.scheduler.store import ACTIVE_STATES, TERMINAL_STATES, JobRecord

NODE_STATES = ("idle", "busy", "draining", "drained", "unhealthy", "down")
_STATE_ORDER = ("queued", "running", "suspending", "suspended", "completed", "failed", "cancelled")
# Every job state the store knows, in the page's order (a state added later goes last).
JOB_STATES = tuple(
    sorted(
        ACTIVE_STATES | TERMINAL_STATES,
        key=lambda s: (_STATE_ORDER.index(s) if s in _STATE_ORDER else len(_STATE_ORDER), s),
    )
)
HOLDING_STATES = ("running", "suspending")  # a job in these holds its nodes' slots


def node_state(node: NodeState, job_ids: list[int]) -> str:
    """The grid colour of a node: idle, busy, draining (drained, jobs still on it), drained, unhealthy, down."""
    if not node.seen or not node.up:
        return "down"
    if not node.healthy:
        return "unhealthy"
    if node.drained:
        return "draining" if job_ids else "drained"
    return "busy" if job_ids else "idle"


def slots_used(jobs: dict[int, JobRecord]) -> dict[str, int]:
    """Node name -> GPU slots held by running or suspending jobs (their ranks on that node)."""
    out: dict[str, int] = {}
    for job in jobs.values():
        if job.state in HOLDING_STATES:
            for name in job.assigned:
                out[name] = out.get(name, 0) + job.ranks_per_node
    return out


def _priority_name(value: int) -> str:
    try:
        return Priority(value).name
    except ValueError:
        return str(value)


def job_json(job: JobRecord, now: float) -> dict[str, Any]:
    """The API form of a job (no environment: it may hold secrets)."""
    if job.finished_at:
        running_s = max(0.0, job.finished_at - job.started_at) if job.started_at else 0.0
    elif job.state in HOLDING_STATES and job.started_at:
        running_s = now - job.started_at
    else:
        running_s = 0.0
    return {
        "id": job.job_id,
        "name": job.name,
        "user": job.user,
        "group": job.group,
        "command": job.command,
        "workdir": job.workdir,
        "state": job.state,
        "reason": job.reason,
        "pending_reason": job.pending_reason,
        "priority": _priority_name(job.priority),
        "base_priority": _priority_name(job.base_priority),
        "nodes": job.nodes,
        "ranks_per_node": job.ranks_per_node,
        "world_size": job.nodes * job.ranks_per_node,
        "assigned_nodes": list(job.assigned),
        "submitted_at": job.submitted_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "age_s": max(0.0, now - job.submitted_at),
        "running_s": running_s,
        "run_seq": job.run_seq,
        "exit_code": job.exit_code,
        "suspend_count": job.suspend_count,
        "time_limit_s": job.time_limit_s,
    }
