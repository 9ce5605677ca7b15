"""``haictl`` job commands: submit, jobs, show, logs, cancel, suspend, resume, hold, release, requeue,
nodes, drain, undrain, quota, user (``haictl history`` is in ``fireflyer.cli.history``).

Each talks to the HAI-Platform scheduler named by ``--scheduler`` / ``HAI_SCHEDULER`` /
``~/.config/fireflyer/client.toml`` with the token from ``--token`` / ``HAI_TOKEN`` / that file.
"""

from __future__ import annotations

import functools
import json
import shlex
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ffcommon.bench import Column, render_table
from fireflyer.cli._text import terminal_safe

_conn_options = [
    click.option("--scheduler", envvar="HAI_SCHEDULER", default=None, help="host:port (env HAI_SCHEDULER)"),
    click.option("--token", envvar="HAI_TOKEN", default=None, help="your token (env HAI_TOKEN)"),
]


def _where_scheduler(option: str | None) -> str:
    """Where the unreachable scheduler's address came from, so a user can tell a stale config from a typo."""
    from fireflyer.config import client_config_path, read_client_config
    from fireflyer.errors import ConfigError

    if option:
        return " (the address from --scheduler or HAI_SCHEDULER)"
    path = client_config_path()
    try:
        recorded = read_client_config().get("scheduler")
    except ConfigError:
        recorded = None
    if recorded:
        return f" (the address in {path}, written by haictl up: is that cluster still up? haictl status)"
    return (
        f" (the default address: no --scheduler, HAI_SCHEDULER or scheduler in {path}; run haictl up first)"
    )


def _client_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Add --scheduler/--token, build the client, and turn HaiError into a one-line error, exit 1."""

    @functools.wraps(fn)
    def wrapper(scheduler: str | None, token: str | None, **kwargs: Any) -> None:
        from haiplatform.errors import HaiError, SchedulerUnavailable
        from haiplatform.scheduler_client import SchedulerClient

        try:
            with SchedulerClient.from_env(scheduler, token) as client:
                fn(client, **kwargs)
        except SchedulerUnavailable as exc:
            click.echo(f"error: {exc}{_where_scheduler(scheduler)}", err=True)
            sys.exit(1)
        except HaiError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except (OSError, TimeoutError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    for opt in reversed(_conn_options):
        wrapper = opt(wrapper)
    return wrapper


def _priority_name(value: int) -> str:
    from haiplatform.scheduler_client import PRIORITIES

    return {v: k for k, v in PRIORITIES.items()}.get(value, str(value))


def _ts(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def job_dict(info: Any) -> dict[str, Any]:
    """A JobInfo as plain JSON-able data (what ``--json`` prints and the web page shows)."""
    d = {
        "job_id": info.job_id, "name": info.spec.name, "user": info.user, "group": info.spec.group,
        "state": info.state, "reason": info.reason, "priority": _priority_name(info.priority),
        "base_priority": _priority_name(info.spec.priority), "nodes": info.spec.nodes,
        "ranks_per_node": info.spec.ranks_per_node, "workdir": info.spec.workdir,
        "command": shlex.join(info.spec.argv) if info.spec.argv else info.spec.command, "argv": list(info.spec.argv),
        "env": dict(info.spec.env), "time_limit_s": info.spec.time_limit_s, "submitted_at": info.submitted_at,
        "started_at": info.started_at, "finished_at": info.finished_at, "assigned_nodes": list(info.assigned_nodes),
        "run_seq": info.run_seq, "exit_code": info.exit_code, "suspend_count": info.suspend_count,
        "pending_reason": info.pending_reason, "held": info.spec.hold, "begin_at": info.spec.begin_at,
        "depends_on": [f"{d.kind}:{d.job_id}" for d in info.spec.depends_on],
        "array_id": info.array_id, "array_index": info.array_index,
        "elapsed_s": round(info.elapsed_s, 3), "node_hours": round(info.node_hours, 6),
    }  # fmt: skip
    if info.history:
        d["history"] = [
            {"at": t.at, "from": t.from_state, "to": t.to_state, "reason": t.reason} for t in info.history
        ]
    return d


def _table(rows: list[list[str]], header: list[str]) -> str:
    rows = [[terminal_safe(c) for c in r] for r in rows]
    cols = [Column(h, align="<") for h in header]
    return "\n".join(render_table(cols, rows, gap="  ", rstrip=True))


def _load_job_file(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:
        raise click.BadParameter(f"{path}: cannot parse: {exc}") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path}: must be a mapping of job fields")
    return data


@click.command()
@click.argument("command", nargs=-1)
@click.option(
    "-f",
    "--file",
    "job_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML or TOML job file",
)
@click.option("--name", help="job name")
@click.option("--nodes", type=int, help="whole nodes (default 1)")
@click.option("--ranks-per-node", type=int, help="processes per node (default 1)")
@click.option("--priority", help="LOW, NORMAL, ABOVE_NORMAL or HIGH (default NORMAL)")
@click.option("--workdir", help="working directory (default: current)")
@click.option("--group", help="quota group (default: yours)")
@click.option("--time-limit-s", type=float, help="wall-clock limit per run; lets the job backfill")
@click.option("-e", "--env", "env", multiple=True, help="NAME=VALUE, repeatable")
@click.option("--shell", "shell", help="run this string with /bin/sh -c instead of an argv after --")
@click.option("--after", "dep_after", multiple=True, help="start after job ID has started (ID[,ID...])")
@click.option("--afterok", "dep_afterok", multiple=True, help="start after job ID completed with exit 0")
@click.option(
    "--afternotok", "dep_afternotok", multiple=True, help="start after job ID failed or was cancelled"
)
@click.option("--afterany", "dep_afterany", multiple=True, help="start after job ID ended, however")
@click.option("--dependency", "dependency", help="Slurm syntax: afterok:12:13,afterany:14")
@click.option("--array", help="one task per index: 0-99, 1,3,5-7; %N runs at most N at once (0-99%8)")
@click.option("--begin", help="not before: now+90, +10m, +2h, 2026-12-03T18:00, or unix seconds")
@click.option("--hold", "hold", is_flag=True, default=None, help="submit held (start it with haictl release)")
@click.option("--json", "as_json", is_flag=True, help='print {"job_id": N, "job_ids": [...]}')
@_client_command
def submit(
    client: Any,
    command: tuple[str, ...],
    shell: str | None,
    job_file: Path | None,
    as_json: bool,
    env: tuple[str, ...],
    dependency: str | None,
    begin: str | None,
    **flags: Any,
) -> None:
    """Submit a job from flags or a job file (flags override the file).

    The words after ``--`` are the argv, run exactly as given (no shell: quotes, ``$`` and ``;`` reach
    the program unchanged). ``--shell 'STRING'`` or a job file's ``command:`` string runs through
    ``/bin/sh -c``; a job file's ``command:`` list is an argv.

    \b
    Examples:
      haictl submit --nodes 2 --priority HIGH -- python train.py --lr 0.1
      haictl submit --shell 'python prep.py && python train.py > out.txt'
      haictl submit --array 0-99%8 -- python sweep.py      # HAI_ARRAY_INDEX per task
      haictl submit --afterok 41 --begin +10m -- python eval.py
      haictl submit -f job.yaml
    \b
    job.yaml:
      name: train
      command: python train.py
      nodes: 2
      ranks_per_node: 8
      priority: ABOVE_NORMAL
      env: {OMP_NUM_THREADS: 4}
    """
    from haiplatform.errors import InvalidSpec
    from haiplatform.scheduler import jobspec

    fields: dict[str, Any] = _load_job_file(job_file) if job_file else {}
    if command and shell is not None:
        raise InvalidSpec("command: give --shell 'STRING' or an argv after --, not both")
    if command:
        fields["command"] = list(command)
    elif shell is not None:
        fields["command"] = shell
    deps: list[tuple[str, int]] = []
    for kind in jobspec.DEPENDENCY_KINDS:
        for ids in flags.pop(f"dep_{kind}"):
            deps += jobspec.parse_dependencies(f"{kind}:{ids.replace(',', ':')}")
    if dependency:
        deps += jobspec.parse_dependencies(dependency)
    if deps:
        fields["depends_on"] = deps
    if begin is not None:
        fields["begin_at"] = jobspec.parse_begin(begin)
    for key, val in flags.items():
        if val is not None:
            fields[key] = val
    for item in env:
        if "=" not in item:
            raise InvalidSpec(f"env: {item!r} must be NAME=VALUE")
        k, v = item.split("=", 1)
        fields.setdefault("env", {})[k] = v
    if isinstance(fields.get("priority"), str):
        fields["priority"] = fields["priority"].upper()
    spec = jobspec.from_fields(fields)
    ids = client.submit_all(spec)
    if as_json:
        click.echo(json.dumps({"job_id": ids[0], "job_ids": ids}))
    elif len(ids) > 1:
        click.echo(f"submitted array {ids[0]}: {len(ids)} tasks, jobs {ids[0]}..{ids[-1]}")
    else:
        click.echo(f"submitted job {ids[0]}")


@click.command()
@click.option("--state", "states", multiple=True, help="filter by state, repeatable")
@click.option("--user", default="", help="only this user's jobs")
@click.option("--limit", type=int, default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_client_command
def jobs(client: Any, states: tuple[str, ...], user: str, limit: int, as_json: bool) -> None:
    """List jobs, newest first.

    \b
    Example:
      haictl jobs --state running --state queued
    """
    infos = client.jobs(list(states), user, limit)
    if as_json:
        click.echo(json.dumps([job_dict(i) for i in infos], indent=1))
        return
    rows = [
        [_job_label(i), i.spec.name[:24], i.user, i.state, _priority_name(i.priority), str(i.spec.nodes),
         _where(i), _ts(i.submitted_at), i.reason[:50]]
        for i in infos
    ]  # fmt: skip
    click.echo(
        _table(rows, ["ID", "NAME", "USER", "STATE", "PRIORITY", "NODES", "ON", "SUBMITTED", "REASON"])
    )


def _job_label(info: Any) -> str:
    """``42``, or ``42 (7_3)`` for task 3 of array 7 (Slurm writes 7_3)."""
    return f"{info.job_id} ({info.array_id}_{info.array_index})" if info.array_id else str(info.job_id)


def _where(info: Any) -> str:
    """Where a job runs, or, like squeue's NODELIST(REASON), why a queued one waits."""
    if info.state in ("running", "suspending"):
        return ",".join(info.assigned_nodes)
    return f"({info.pending_reason})" if info.pending_reason else "-"


@click.command()
@click.argument("job_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@_client_command
def show(client: Any, job_id: int, as_json: bool) -> None:
    """Show one job and every state transition it went through.

    \b
    Example:
      haictl show 42
    """
    d = job_dict(client.job(job_id))
    if as_json:
        click.echo(json.dumps(d, indent=1))
        return
    for key in ("job_id", "name", "user", "group", "state", "reason", "pending_reason", "priority", "base_priority",
                "nodes", "ranks_per_node", "command", "workdir", "assigned_nodes", "run_seq", "suspend_count",
                "exit_code", "elapsed_s", "node_hours"):  # fmt: skip
        click.echo(f"{key:15} {terminal_safe(d[key])}")
    if d["depends_on"]:
        click.echo(f"{'depends_on':15} {','.join(d['depends_on'])}")
    if d["array_id"]:
        click.echo(f"{'array':15} {d['array_id']}_{d['array_index']}")
    if d["begin_at"]:
        click.echo(f"{'begin_at':15} {_ts(d['begin_at'])}")
    click.echo(f"{'submitted_at':15} {_ts(d['submitted_at'])}")
    click.echo("history:")
    for t in d.get("history", []):
        click.echo(f"  {_ts(t['at'])}  {t['from'] or '-':>10} -> {t['to']:<10} {terminal_safe(t['reason'])}")


@click.command()
@click.argument("job_id", type=int)
@click.option("--rank", type=int, default=0, show_default=True)
@click.option("-f", "--follow", is_flag=True, help="keep printing until the job ends")
@click.option("--tail-bytes", type=int, default=65536, show_default=True)
@_client_command
def logs(client: Any, job_id: int, rank: int, follow: bool, tail_bytes: int) -> None:
    """Print a rank's stdout/stderr (your jobs only, unless admin).

    \b
    Example:
      haictl logs 42 --rank 1 -f
    """
    if follow:
        for chunk in client.follow_log(job_id, rank):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
        return
    sys.stdout.buffer.write(client.tail_log(job_id, rank, -tail_bytes, tail_bytes).data)


def _job_action(name: str, doc: str) -> click.Command:
    @click.command(name=name, help=doc)
    @click.argument("job_ids", type=int, nargs=-1, required=True)
    @_client_command
    def cmd(client: Any, job_ids: tuple[int, ...]) -> None:
        for job_id in job_ids:
            info = getattr(client, name)(job_id)
            click.echo(f"job {job_id}: {info.state} ({terminal_safe(info.reason)})")

    return cmd


cancel = _job_action("cancel", "Cancel jobs.\n\n\b\nExample:\n  haictl cancel 42 43")
suspend = _job_action(
    "suspend", "Suspend jobs (they checkpoint, then wait for resume).\n\n\b\nExample:\n  haictl suspend 42"
)
resume = _job_action("resume", "Put suspended jobs back in the queue.\n\n\b\nExample:\n  haictl resume 42")
hold = _job_action(
    "hold", "Keep queued jobs from starting (scontrol hold).\n\n\b\nExample:\n  haictl hold 42 43"
)
release = _job_action(
    "release", "Let held jobs start (scontrol release).\n\n\b\nExample:\n  haictl release 42"
)
requeue = _job_action(
    "requeue",
    "Queue jobs again (scontrol requeue): a running job is stopped without waiting for a checkpoint and\n"
    "runs its command again with HAI_RESUMED=1; an ended job is reopened.\n\n\b\nExample:\n  haictl requeue 42",
)


@click.command()
@click.option("--json", "as_json", is_flag=True)
@_client_command
def nodes(client: Any, as_json: bool) -> None:
    """List nodes: state, health, drain, jobs.

    \b
    Example:
      haictl nodes --json
    """
    infos = client.nodes()
    if as_json:
        click.echo(json.dumps([
            {"name": n.name, "slots": n.slots, "state": n.state, "healthy": n.healthy, "drained": n.drained,
             "reason": n.reason, "last_heartbeat": n.last_heartbeat, "job_ids": list(n.job_ids)}
            for n in infos
        ], indent=1))  # fmt: skip
        return
    rows = [
        [n.name, str(n.slots), n.state, "yes" if n.healthy else "NO", "yes" if n.drained else "no",
         ",".join(map(str, n.job_ids)) or "-", n.reason]
        for n in infos
    ]  # fmt: skip
    click.echo(_table(rows, ["NODE", "SLOTS", "STATE", "HEALTHY", "DRAINED", "JOBS", "REASON"]))


@click.command()
@click.argument("node")
@click.option("--reason", default="", help="recorded with the drain")
@_client_command
def drain(client: Any, node: str, reason: str) -> None:
    """Stop placing new jobs on NODE (admin); running jobs continue.

    \b
    Example:
      haictl drain n7 --reason "bad DIMM"
    """
    info = client.drain(node, reason)
    click.echo(f"{info.name}: drained ({info.reason})")


@click.command()
@click.argument("node")
@_client_command
def undrain(client: Any, node: str) -> None:
    """Let NODE take new jobs again (admin).

    \b
    Example:
      haictl undrain n7
    """
    info = client.undrain(node)
    click.echo(f"{info.name}: undrained")


@click.command()
@click.argument("scope", required=False, type=click.Choice(["user", "group"]))
@click.argument("name", required=False)
@click.argument("max_nodes", required=False, type=int)
@click.option("--priority", default="", help="limit only this priority (default: all together)")
@click.option("--json", "as_json", is_flag=True)
@_client_command
def quota(
    client: Any, scope: str | None, name: str | None, max_nodes: int | None, priority: str, as_json: bool
) -> None:
    """List node quotas, or set one (admin; a negative MAX_NODES removes it).

    \b
    Examples:
      haictl quota
      haictl quota user alice 4
      haictl quota group nlp 16 --priority HIGH
    """
    if scope is not None:
        if name is None or max_nodes is None:
            raise click.UsageError("give SCOPE NAME MAX_NODES to set a quota")
        quotas = client.set_quota(scope, name, max_nodes, priority)
    else:
        quotas = client.quotas()
    rows = [
        [q.scope, q.name, _priority_name(q.priority) if q.priority else "*", str(q.max_nodes)] for q in quotas
    ]
    if as_json:
        click.echo(
            json.dumps([dict(zip(["scope", "name", "priority", "max_nodes"], r, strict=True)) for r in rows])
        )
        return
    click.echo(_table(rows, ["SCOPE", "NAME", "PRIORITY", "MAX_NODES"]))


@click.group()
def user() -> None:
    """Manage users and their tokens (admin).

    \b
    Example:
      haictl user add alice --group nlp
    """


@user.command("add")
@click.argument("name")
@click.option("--group", default="", help="quota group (default: NAME)")
@click.option("--admin", is_flag=True)
@_client_command
def user_add(client: Any, name: str, group: str, admin: bool) -> None:
    """Create NAME (or give it a new token) and print the token once."""
    click.echo(client.add_user(name, group, admin))


@user.command("whoami")
@_client_command
def user_whoami(client: Any) -> None:
    """Print who the token belongs to."""
    me = client.whoami()
    click.echo(f"{me.user} (group {me.group}{', admin' if me.admin else ''})")
