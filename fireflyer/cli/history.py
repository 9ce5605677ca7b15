"""``haictl history``: accounting (Slurm's sacct) from the scheduler's job table.

Per job: state, exit code, elapsed time holding nodes over every run, node-hours; ``--by-user`` sums
them per user. Filters by user, state and submission time; ``--json`` and ``--csv`` for scripts.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from fireflyer.cli._text import terminal_safe
from fireflyer.cli.jobs import _client_command, _table, _ts, job_dict

_HISTORY_COLUMNS = [
    "job_id", "name", "user", "group", "state", "exit_code", "nodes", "submitted_at", "started_at", "finished_at",
    "elapsed_s", "node_hours", "run_seq", "array_id", "array_index",
]  # fmt: skip


@click.command()
@click.option("--user", default="", help="only this user's jobs")
@click.option("--state", "states", multiple=True, help="only jobs in this state, repeatable")
@click.option("--since", help="submitted at or after: -1d, -2h, 2026-12-01, 2026-12-01T09:00, unix seconds")
@click.option("--until", help="submitted before (same forms as --since)")
@click.option("--limit", type=int, default=1000, show_default=True)
@click.option("--by-user", is_flag=True, help="one row per user: jobs, node-hours, failures")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True)
@_client_command
def history(
    client: Any,
    user: str,
    states: tuple[str, ...],
    since: str | None,
    until: str | None,
    limit: int,
    by_user: bool,
    as_json: bool,
    as_csv: bool,
) -> None:
    """Accounting (sacct): jobs with their elapsed time, node-hours and exit codes.

    \b
    Examples:
      haictl history --since -1d --state failed
      haictl history --by-user --since 2026-12-01 --csv
    """
    from haiplatform.scheduler import jobspec

    def when(text: str | None) -> float:
        if not text:
            return 0.0
        return time.time() - _span(text[1:]) if text.startswith("-") else jobspec.parse_begin(text)

    infos = client.jobs(list(states), user, limit, since=when(since), until=when(until))
    rows = [{k: job_dict(i)[k] for k in _HISTORY_COLUMNS} for i in infos]
    header = _HISTORY_COLUMNS
    if by_user:
        per: dict[str, dict[str, Any]] = {}
        for r in rows:
            u = per.setdefault(r["user"], {"user": r["user"], "jobs": 0, "completed": 0, "failed": 0,
                                           "cancelled": 0, "elapsed_s": 0.0, "node_hours": 0.0})  # fmt: skip
            u["jobs"] += 1
            if r["state"] in ("completed", "failed", "cancelled"):
                u[r["state"]] += 1
            u["elapsed_s"] = round(u["elapsed_s"] + r["elapsed_s"], 3)
            u["node_hours"] = round(u["node_hours"] + r["node_hours"], 6)
        rows = sorted(per.values(), key=lambda u: -u["node_hours"])
        header = ["user", "jobs", "completed", "failed", "cancelled", "elapsed_s", "node_hours"]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
    elif as_csv:
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=header, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        shown = [
            [_ts(r[k]) if k.endswith("_at") else terminal_safe(str(r[k]))[:24] for k in header] for r in rows
        ]
        click.echo(_table(shown, [h.upper() for h in header]))


def _span(text: str) -> float:
    """Seconds in ``1d``/``2h``/``30m``/``90`` (for ``--since -1d``)."""
    unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(text[-1:], 0)
    try:
        return float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        raise click.BadParameter(f"{text!r} must be N[smhd]") from None
