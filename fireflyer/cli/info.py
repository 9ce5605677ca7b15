"""``haictl info``: what this installation has (extension, SIMD, CUDA, MPI)."""

from __future__ import annotations

import json
import shutil

import click


def installation_info() -> dict[str, object]:
    """Facts a bug report needs: versions, SIMD support, whether CUDA and mpirun are usable."""
    import fireflyer
    import hfreduce

    info: dict[str, object] = {"fireflyer": fireflyer.__version__, "cpu": hfreduce.cpu_features()}
    try:
        hfreduce.cuda_extension()

        info["cuda_extension"] = True
    except ImportError:
        info["cuda_extension"] = False
    info["mpirun"] = shutil.which("mpirun")
    return info


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
def info(as_json: bool) -> None:
    """Show what this installation supports.

    \b
    Example:
      haictl info --json
    """
    data = installation_info()
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    for key, value in data.items():
        click.echo(f"{key:16} {value}")
