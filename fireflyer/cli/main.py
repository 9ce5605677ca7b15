"""``haictl``: one command for jobs, the file system, benchmarks and local clusters.

Each component contributes its command group from its own module, listed in ``_GROUPS``;
a group whose dependencies are not installed is left out of ``--help`` instead of breaking it.
"""

from __future__ import annotations

import importlib

import click

import fireflyer

# (module, attribute) of each click command or group that haictl exposes.
_GROUPS: list[tuple[str, str]] = [
    ("fireflyer.cli.info", "info"),
    ("fireflyer.cli.bench", "bench"),
    *[("fireflyer.cli.cluster_cmds", c) for c in ("up", "down", "status", "serve", "init_chains", "demo")],
    *[("fireflyer.cli.jobs", c) for c in ("submit", "jobs", "show", "logs", "cancel", "suspend", "resume")],
    *[("fireflyer.cli.jobs", c) for c in ("hold", "release", "requeue")],
    ("fireflyer.cli.history", "history"),
    *[("fireflyer.cli.jobs", c) for c in ("nodes", "drain", "undrain", "quota", "user")],
    ("fireflyer.cli.fs", "fs"),
]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(fireflyer.__version__, prog_name="haictl")
def cli() -> None:
    """Fire-Flyer cluster control.

    \b
    Example:
      haictl info
    """


for _module, _attr in _GROUPS:
    cli.add_command(getattr(importlib.import_module(_module), _attr))

if __name__ == "__main__":
    cli()
