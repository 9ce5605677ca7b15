"""The one job-spec validator: every field's rule, limit and error message, for client and scheduler alike.

``from_fields`` turns a job file / flags mapping into a ``JobSpec`` (what ``haictl submit`` and
``SchedulerClient.submit`` call); ``check`` applies the field rules to a ``JobSpec`` (both the client,
through ``from_fields``, and the scheduler, on every Submit, call it, so the two cannot disagree);
``to_record`` is the scheduler's step from a checked spec to a queued job. Every error is an
``InvalidSpec`` whose message starts with the field's name.
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Mapping
from typing import Any

from haiplatform import errors
from haiplatform.protos import scheduler_pb2
from haiplatform.scheduler.policy import Priority
from haiplatform.scheduler.store import JobRecord, User

PRIORITIES: dict[str, int] = {p.name: p.value for p in Priority}
MAX_NODES = 100_000  # more than any cluster has
MAX_RANKS_PER_NODE = 1024

# Set by the scheduler or the agent in every rank's environment: a job may not override them.
ENV_RESERVED = frozenset({
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "NNODES", "MASTER_ADDR",
    "MASTER_PORT", "MASTER_IP", "HAI_JOB_ID", "HAI_JOB_NAME", "HAI_RUN_SEQ", "HAI_RESUMED",
    "HAI_SUSPEND_ADDR", "HFREDUCE_LOCAL_WORLD_SIZE",
})  # fmt: skip

FIELDS = ("name", "command", "workdir", "env", "nodes", "ranks_per_node", "priority", "group", "time_limit_s")


def from_fields(fields: Mapping[str, Any], cwd: str | None = None) -> scheduler_pb2.JobSpec:
    """Build and check a JobSpec from a job file / flags mapping; a relative workdir is taken from ``cwd``."""
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise errors.InvalidSpec(f"{unknown[0]}: unknown field (expected one of {', '.join(sorted(FIELDS))})")
    spec = scheduler_pb2.JobSpec()
    command = fields.get("command")
    if isinstance(command, list | tuple):  # a list is an argv, run exactly as given (no shell)
        if not all(isinstance(a, str) for a in command):
            raise errors.InvalidSpec("command: a command list must hold only strings")
        spec.argv.extend(command)
        fields = {k: v for k, v in fields.items() if k != "command"}
    for key in ("name", "command", "workdir", "group"):
        val = fields.get(key)
        if val is None:
            continue
        if not isinstance(val, str):
            raise errors.InvalidSpec(f"{key}: must be a string")
        setattr(spec, key, val)
    spec.workdir = os.path.abspath(os.path.join(cwd or os.getcwd(), spec.workdir))
    for key, default in (("nodes", 1), ("ranks_per_node", 1)):
        val = fields.get(key, default)
        if isinstance(val, bool) or not isinstance(val, int) or val < 1:
            raise errors.InvalidSpec(f"{key}: must be a positive integer")
        setattr(spec, key, min(val, 2**32 - 1))  # the limits below name the field
    prio = fields.get("priority", "NORMAL")
    if isinstance(prio, str) and prio.upper() in PRIORITIES:
        spec.priority = PRIORITIES[prio.upper()]
    elif isinstance(prio, int) and not isinstance(prio, bool) and prio in PRIORITIES.values():
        spec.priority = prio
    else:
        raise errors.InvalidSpec(f"priority: must be one of {', '.join(PRIORITIES)}, got {prio!r}")
    limit = fields.get("time_limit_s", 0)
    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit < 0:
        raise errors.InvalidSpec("time_limit_s: must be a non-negative number of seconds")
    spec.time_limit_s = float(limit)
    env = fields.get("env", {}) or {}
    if not isinstance(env, Mapping):
        raise errors.InvalidSpec("env: must be a mapping of NAME: value")
    for k, v in env.items():
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise errors.InvalidSpec(f"env.{k}: must be a string or number")
        spec.env[str(k)] = str(v)
    check(spec)
    return spec


def check(spec: scheduler_pb2.JobSpec) -> None:
    """Apply every field rule to ``spec``; raises InvalidSpec naming the first bad field."""
    if spec.argv:
        if spec.command:
            raise errors.InvalidSpec("command: give a shell command or an argv, not both")
        if not spec.argv[0]:
            raise errors.InvalidSpec("argv[0]: the program must not be empty")
        for i, arg in enumerate(spec.argv):
            if "\0" in arg:
                raise errors.InvalidSpec(f"argv[{i}]: contains a NUL byte")
    elif not spec.command.strip():
        raise errors.InvalidSpec("command: is required")
    elif "\0" in spec.command:
        raise errors.InvalidSpec("command: contains a NUL byte")
    if not spec.workdir.startswith("/"):
        raise errors.InvalidSpec(f"workdir: must be an absolute path, got {spec.workdir!r}")
    if spec.nodes < 1:
        raise errors.InvalidSpec("nodes: must be a positive integer")
    if spec.nodes > MAX_NODES:
        raise errors.InvalidSpec(f"nodes: {spec.nodes} is over the limit of {MAX_NODES}")
    if spec.ranks_per_node > MAX_RANKS_PER_NODE:
        raise errors.InvalidSpec(f"ranks_per_node: must be between 1 and {MAX_RANKS_PER_NODE}")
    prio = spec.priority or int(Priority.NORMAL)
    if prio not in PRIORITIES.values():
        raise errors.InvalidSpec(f"priority: must be one of {', '.join(PRIORITIES)}, got {prio}")
    if spec.time_limit_s < 0:
        raise errors.InvalidSpec("time_limit_s: must be a non-negative number of seconds")
    for key in spec.env:
        if not key or not (key[0].isalpha() or key[0] == "_") or not key.replace("_", "").isalnum():
            raise errors.InvalidSpec(f"env: {key!r} is not a valid variable name")
        if key in ENV_RESERVED:
            raise errors.InvalidSpec(f"env: {key} is set by the scheduler and cannot be overridden")


def to_record(spec: scheduler_pb2.JobSpec, caller: User, now: float | None = None) -> JobRecord:
    """The queued job for a submitted spec: checks the fields and the caller's right to the group."""
    check(spec)
    group = spec.group or caller.group
    if group != caller.group and not caller.admin:
        raise errors.PermissionDenied(f"group: you are in group {caller.group}, not {group}")
    prio = spec.priority or int(Priority.NORMAL)
    command = shlex.join(spec.argv) if spec.argv else spec.command
    default_name = os.path.basename(spec.argv[0]) if spec.argv else spec.command.split()[0]
    return JobRecord(
        name=spec.name or default_name[:40], user=caller.name, group=group, command=command, argv=list(spec.argv),
        workdir=spec.workdir, env=dict(spec.env), nodes=spec.nodes, ranks_per_node=spec.ranks_per_node or 1,
        priority=prio, base_priority=prio, time_limit_s=spec.time_limit_s, state="queued",
        reason="waiting for nodes", submitted_at=now or time.time(),
    )  # fmt: skip
