"""``haictl bench``: each component's benchmark, printing a table against a peer measured in the same run."""

from __future__ import annotations

import importlib

import click

# (name, module, attribute) of each benchmark's click command.
_BENCHMARKS: list[tuple[str, str, str]] = [
    ("allreduce", "hfreduce.bench", "click_command"),
    ("sched", "haiplatform.bench", "sched_bench"),
    ("fs", "fs3.bench.native", "fs_bench"),
    ("train", "fireflyer.haiscale.bench", "click_command"),
]


class _LazyBenchGroup(click.Group):
    """Imports a benchmark's module only when that benchmark (or ``bench --help``) needs it.

    The benchmark modules pull in torch, numpy and grpc; importing them eagerly made every
    ``haictl`` call, ``--help`` included, take seconds.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, _, _ in _BENCHMARKS]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        for name, module, attr in _BENCHMARKS:
            if name == cmd_name:
                return getattr(importlib.import_module(module), attr)
        return None


@click.group(cls=_LazyBenchGroup)
def bench() -> None:
    """Run a benchmark and print an nccl-tests-style table.

    \b
    Example:
      haictl bench --help
    """
