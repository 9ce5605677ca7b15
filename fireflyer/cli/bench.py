"""``haictl bench``: each component's benchmark, printing a table against a peer measured in the same run."""

from __future__ import annotations

import importlib

import click

# (name, module, attribute) of each benchmark's click command.
_BENCHMARKS: list[tuple[str, str, str]] = [
    ("allreduce", "hfreduce.bench", "click_command"),
    ("sched", "haiplatform.bench", "sched_bench"),
    ("fs", "fs3.bench", "fs_bench"),
    ("train", "fireflyer.haiscale.bench", "click_command"),
]


@click.group()
def bench() -> None:
    """Run a benchmark and print an nccl-tests-style table.

    \b
    Example:
      haictl bench --help
    """


for _name, _module, _attr in _BENCHMARKS:
    bench.add_command(getattr(importlib.import_module(_module), _attr), _name)
