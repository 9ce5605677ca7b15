"""``haictl fs bench``: the FUSE mount against the native client and the local disk (``fs3.bench.mount``)."""

from __future__ import annotations

import os

import click

from fireflyer.cli.fs_common import _fail, _parse_size, resolve_mgmtd


@click.command("bench")
@click.option("--size", default="1G", show_default=True, help="bytes of the dd-style sequential test (K/M/G)")
@click.option("--files", default=500, show_default=True, help="empty files per create/stat run")
@click.option("--samples", default=1000, show_default=True, help="4 KiB samples in the dataset test")
@click.option("--reads", default=2000, show_default=True, help="random sample reads per dataset run")
@click.option("--repeats", default=3, show_default=True, help="runs per figure (the median is shown)")
@click.option(
    "--local/--running",
    "local",
    default=None,
    help="start a private local cluster / use the running one (default: the running one if reachable)",
)
@click.option("--data-dir", type=click.Path(file_okay=False), help="where mount, peer files, cluster live")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def bench_cmd(
    ctx: click.Context,
    size: str,
    files: int,
    samples: int,
    reads: int,
    repeats: int,
    local: bool | None,
    data_dir: str | None,
    as_json: bool,
) -> None:
    """Benchmark a FUSE mount against the native client and the local disk, in one run.

    Mounts the cluster in a temp dir (unmounted at the end, also on failure) and prints three tables:
    dd-style sequential write/read, small-file creates/stats, and random 4 KiB sample reads from a
    packed dataset vs the same samples as individual files. Uses the running cluster (found like the
    other fs commands: --mgmtd, $FS3_MGMTD, client.toml from `haictl up`), else starts its own.

    \b
    Example:
      haictl fs bench --size 256M
      haictl fs bench --local --size 1G --repeats 3
    """
    from ffcommon.bench import emit
    from fs3.admin import routing
    from fs3.bench.mount import mount_bench

    mgmtd = None
    if local is not True:
        try:
            mgmtd = resolve_mgmtd(ctx.obj.get("mgmtd"))
            routing(mgmtd, timeout_s=3)
        except (click.UsageError, OSError) as exc:
            if local is False:
                _fail(exc)
            mgmtd = None
    if data_dir:
        os.makedirs(data_dir, exist_ok=True)
    try:
        tables = mount_bench(
            mgmtd, _parse_size(size), files, samples, reads, repeats, data_dir,
            log=lambda m: click.echo(f"haictl fs bench: {m}", err=True),
        )  # fmt: skip
    except (OSError, RuntimeError, TimeoutError) as exc:
        _fail(exc)
    emit(tables, as_json)
