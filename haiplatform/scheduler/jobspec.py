"""The one job-spec validator: every field's rule, limit and error message, for client and scheduler alike.

``from_fields`` turns a job file / flags mapping into a ``JobSpec`` (what ``haictl submit`` and
``SchedulerClient.submit`` call); ``check`` applies the field rules to a ``JobSpec`` (both the client,
through ``from_fields``, and the scheduler, on every Submit, call it, so the two cannot disagree);
``to_record`` is the scheduler's step from a checked spec to a queued job, and
``check_against_cluster`` its check that the live cluster could ever run it. Every error is an
``InvalidSpec`` whose message starts with the field's name and says the limit.
"""

from __future__ import annotations

import os
import shlex
import time
import unicodedata
from collections.abc import Mapping
from typing import Any

from haiplatform import errors
from haiplatform.protos import scheduler_pb2
from haiplatform.scheduler.policy import Priority
from haiplatform.scheduler.store import JobRecord, User

PRIORITIES: dict[str, int] = {p.name: p.value for p in Priority}
MAX_NODES = 100_000  # more than any cluster has
MAX_RANKS_PER_NODE = 1024
MAX_NAME_CHARS = 256
MAX_COMMAND_BYTES = 65_536  # well under Linux's 128 KiB per argument string
MAX_WORKDIR_BYTES = 4096  # PATH_MAX
MAX_ENV_VARS = 1024
MAX_ENV_BYTES = 131_072  # NAME=value plus NUL over all variables; the launch env must fit ARG_MAX
MAX_ARRAY_TASKS = 10_000
MAX_DEPENDENCIES = 1000
DEPENDENCY_KINDS = ("after", "afterok", "afternotok", "afterany")
# Characters that reorder or hide text (bidi overrides/isolates/marks, line separators).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")

# Set by the scheduler or the agent in every rank's environment: a job may not override them.
ENV_RESERVED = frozenset({
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK", "NNODES", "MASTER_ADDR",
    "MASTER_PORT", "MASTER_IP", "HAI_JOB_ID", "HAI_JOB_NAME", "HAI_RUN_SEQ", "HAI_RESUMED",
    "HAI_SUSPEND_ADDR", "HAI_RUN_TOKEN", "HFREDUCE_LOCAL_WORLD_SIZE", "HAI_ARRAY_INDEX", "HAI_ARRAY_JOB_ID",
})  # fmt: skip

FIELDS = (
    "name", "command", "workdir", "env", "nodes", "ranks_per_node", "priority", "group", "time_limit_s",
    "depends_on", "begin_at", "hold", "array",
)  # fmt: skip


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
    begin = fields.get("begin_at", 0)
    if isinstance(begin, str):
        begin = parse_begin(begin)
    if isinstance(begin, bool) or not isinstance(begin, int | float) or begin < 0:
        raise errors.InvalidSpec("begin_at: must be a unix time in seconds (0 = now)")
    spec.begin_at = float(begin)
    hold = fields.get("hold", False)
    if not isinstance(hold, bool):
        raise errors.InvalidSpec("hold: must be true or false")
    spec.hold = hold
    array = fields.get("array", "")
    if not isinstance(array, str):
        raise errors.InvalidSpec("array: must be a string like '0-99%8'")
    spec.array = array
    deps = fields.get("depends_on", []) or []
    if isinstance(deps, str):
        deps = parse_dependencies(deps)
    if not isinstance(deps, list | tuple):
        raise errors.InvalidSpec("depends_on: must be a list of {kind, job_id} or a string 'afterok:12:13'")
    for d in deps:
        kind, job_id = (d.get("kind", "afterany"), d.get("job_id")) if isinstance(d, Mapping) else d
        if isinstance(job_id, bool) or not isinstance(job_id, int) or job_id < 1:
            raise errors.InvalidSpec(f"depends_on: job id must be a positive integer, got {job_id!r}")
        spec.depends_on.add(kind=str(kind), job_id=job_id)
    env = fields.get("env", {}) or {}
    if not isinstance(env, Mapping):
        raise errors.InvalidSpec("env: must be a mapping of NAME: value")
    for k, v in env.items():
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise errors.InvalidSpec(f"env.{k}: must be a string or number")
        spec.env[str(k)] = str(v)
    check(spec)
    return spec


def parse_begin(text: str, now: float | None = None) -> float:
    """Slurm-like ``--begin``: ``now+90``, ``+10m``/``+2h``/``+1d``, ``2026-12-03T18:00[:SS]`` (local time),
    or unix seconds; returns unix seconds."""
    import datetime

    t = text.strip().lower()
    now = time.time() if now is None else now
    rel = t.removeprefix("now")
    if rel.startswith("+") or t == "now":
        num = rel[1:]
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(num[-1:], 0)
        num = num[:-1] if unit else num
        try:
            return now + float(num or 0) * (unit or 1)
        except ValueError:
            pass
    else:
        try:
            return float(t)
        except ValueError:
            pass
        try:
            return datetime.datetime.fromisoformat(text.strip()).timestamp()
        except ValueError:
            pass
    raise errors.InvalidSpec(
        f"begin_at: {text!r} must be now+SECONDS, +N[smhd], YYYY-MM-DDTHH:MM[:SS] or unix seconds"
    )


def parse_dependencies(text: str) -> list[tuple[str, int]]:
    """Slurm's ``--dependency`` syntax: ``afterok:12:13,afterany:14`` -> [(kind, job id), ...]."""
    out: list[tuple[str, int]] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, ids = part.partition(":")
        if kind not in DEPENDENCY_KINDS or not ids:
            raise errors.InvalidSpec(
                f"depends_on: {part!r} must be KIND:ID[:ID...] with KIND one of {', '.join(DEPENDENCY_KINDS)}"
            )
        for job_id in ids.split(":"):
            if not job_id.isdigit() or int(job_id) < 1:
                raise errors.InvalidSpec(f"depends_on: {job_id!r} in {part!r} is not a job id")
            out.append((kind, int(job_id)))
    return out


def parse_array(text: str) -> tuple[list[int], int]:
    """``"0-99%8"`` / ``"1,3,5-7"`` -> (sorted task indices, max tasks running at once; 0 = no limit)."""
    body, _, limit_s = text.partition("%")
    limit = 0
    if limit_s:
        if not limit_s.isdigit() or int(limit_s) < 1:
            raise errors.InvalidSpec(f"array: the limit after % must be a positive integer, got {limit_s!r}")
        limit = int(limit_s)
    indices: set[int] = set()
    for part in body.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()):
            raise errors.InvalidSpec(f"array: {part.strip()!r} must be N or N-M (non-negative integers)")
        a, b = int(lo), int(hi) if dash else int(lo)
        if b < a:
            raise errors.InvalidSpec(f"array: range {a}-{b} is empty")
        if b - a + 1 + len(indices) > MAX_ARRAY_TASKS or b >= 2**31:
            raise errors.InvalidSpec(
                f"array: more than the limit of {MAX_ARRAY_TASKS} tasks (or an index >= 2^31)"
            )
        indices.update(range(a, b + 1))
    return sorted(indices), limit


def _check_text(field: str, value: str, max_bytes: int, allow_newlines: bool = False) -> None:
    if "\0" in value:
        raise errors.InvalidSpec(f"{field}: must not contain NUL characters")
    if len(value.encode()) > max_bytes:
        raise errors.InvalidSpec(f"{field}: {len(value.encode())} bytes is over the limit of {max_bytes}")
    if not allow_newlines:
        for ch in value:
            if ch in _BIDI or unicodedata.category(ch) == "Cc":
                raise errors.InvalidSpec(
                    f"{field}: must not contain control or bidirectional-override characters (found U+{ord(ch):04X})"
                )


def check(spec: scheduler_pb2.JobSpec) -> None:
    """Apply every field rule to ``spec``; raises InvalidSpec naming the first bad field."""
    if len(spec.name) > MAX_NAME_CHARS:
        raise errors.InvalidSpec(f"name: {len(spec.name)} characters is over the limit of {MAX_NAME_CHARS}")
    _check_text("name", spec.name, 4 * MAX_NAME_CHARS)
    if spec.argv:
        if spec.command:
            raise errors.InvalidSpec("command: give a shell command or an argv, not both")
        if not spec.argv[0]:
            raise errors.InvalidSpec("argv[0]: the program must not be empty")
        for i, arg in enumerate(spec.argv):
            if "\0" in arg:
                raise errors.InvalidSpec(f"argv[{i}]: contains a NUL byte")
        total = sum(len(arg.encode()) + 1 for arg in spec.argv)
        if total > MAX_COMMAND_BYTES:
            raise errors.InvalidSpec(f"argv: {total} bytes is over the limit of {MAX_COMMAND_BYTES}")
    elif not spec.command.strip():
        raise errors.InvalidSpec("command: is required")
    elif "\0" in spec.command:
        raise errors.InvalidSpec("command: contains a NUL byte")
    else:
        _check_text("command", spec.command, MAX_COMMAND_BYTES, allow_newlines=True)
    if not spec.workdir.startswith("/"):
        raise errors.InvalidSpec(f"workdir: must be an absolute path, got {spec.workdir!r}")
    _check_text("workdir", spec.workdir, MAX_WORKDIR_BYTES)
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
    if len(spec.env) > MAX_ENV_VARS:
        raise errors.InvalidSpec(f"env: {len(spec.env)} variables is over the limit of {MAX_ENV_VARS}")
    env_bytes = sum(len(k.encode()) + len(v.encode()) + 2 for k, v in spec.env.items())
    if env_bytes > MAX_ENV_BYTES:
        raise errors.InvalidSpec(f"env: {env_bytes} bytes (NAME=value) is over the limit of {MAX_ENV_BYTES}")
    for key, value in spec.env.items():
        if "\0" in value:
            raise errors.InvalidSpec(f"env.{key}: must not contain NUL characters")
        if not key or not (key[0].isalpha() or key[0] == "_") or not key.replace("_", "").isalnum():
            raise errors.InvalidSpec(f"env: {key!r} is not a valid variable name")
        if key in ENV_RESERVED:
            raise errors.InvalidSpec(f"env: {key} is set by the scheduler and cannot be overridden")
    if spec.begin_at < 0:
        raise errors.InvalidSpec("begin_at: must be a unix time in seconds (0 = now)")
    if len(spec.depends_on) > MAX_DEPENDENCIES:
        raise errors.InvalidSpec(
            f"depends_on: {len(spec.depends_on)} is over the limit of {MAX_DEPENDENCIES}"
        )
    for d in spec.depends_on:
        if d.kind not in DEPENDENCY_KINDS:
            raise errors.InvalidSpec(
                f"depends_on: kind {d.kind!r} must be one of {', '.join(DEPENDENCY_KINDS)}"
            )
        if d.job_id < 1:
            raise errors.InvalidSpec("depends_on: job id must be a positive integer")
    if spec.array:
        parse_array(spec.array)


def to_record(spec: scheduler_pb2.JobSpec, caller: User, now: float | None = None) -> JobRecord:
    """The queued job for a submitted spec: checks the fields and the caller's right to the group."""
    check(spec)
    group = spec.group or caller.group
    if group != caller.group and not caller.admin:
        raise errors.PermissionDenied(f"group: you are in group {caller.group}, not {group}")
    prio = spec.priority or int(Priority.NORMAL)
    command = shlex.join(spec.argv) if spec.argv else spec.command
    default_name = os.path.basename(spec.argv[0]) if spec.argv else spec.command.split()[0]
    default_name = "".join(c for c in default_name[:40] if unicodedata.category(c)[0] != "C")
    return JobRecord(
        name=spec.name or default_name[:40], user=caller.name, group=group, command=command, argv=list(spec.argv),
        workdir=spec.workdir, env=dict(spec.env), nodes=spec.nodes, ranks_per_node=spec.ranks_per_node or 1,
        priority=prio, base_priority=prio, time_limit_s=spec.time_limit_s, state="queued",
        reason="held at submission" if spec.hold else "waiting for nodes", submitted_at=now or time.time(),
        depends=[(d.kind, d.job_id) for d in spec.depends_on], begin_at=spec.begin_at, hold=spec.hold,
    )  # fmt: skip


def check_against_cluster(
    job: JobRecord, slot_counts: Mapping[int, int], quotas: Mapping[tuple[str, str, int], int]
) -> None:
    """Reject a job the live cluster could never run: more nodes than registered, more ranks per node
    than any node's slots, more nodes than a quota of its user or group allows. ``slot_counts`` maps
    a slot count to how many nodes have it; with no node registered yet nothing is known about the
    cluster, so only the quotas are checked."""
    if slot_counts:
        registered = sum(slot_counts.values())
        if job.nodes > registered:
            raise errors.InvalidSpec(
                f"nodes: {job.nodes} is more than the {registered} nodes of this cluster"
            )
        most = max(slot_counts)
        if job.ranks_per_node > most:
            raise errors.InvalidSpec(
                f"ranks_per_node: {job.ranks_per_node} is more than the {most} slots of the largest node"
            )
        fit = sum(n for slots, n in slot_counts.items() if slots >= job.ranks_per_node)
        if job.nodes > fit:
            raise errors.InvalidSpec(
                f"nodes: only {fit} nodes have the {job.ranks_per_node} slots that ranks_per_node asks for"
            )
    for scope, name in (("user", job.user), ("group", job.group)):
        for prio in (0, job.priority):
            limit = quotas.get((scope, name, prio))
            if limit is not None and job.nodes > limit:
                at = f" at priority {Priority(prio).name}" if prio else ""
                raise errors.InvalidSpec(
                    f"nodes: {job.nodes} is more than the {limit}-node quota of {scope} {name}{at}, "
                    "so the job could never run"
                )
