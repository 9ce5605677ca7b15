"""``haictl fs mount`` and ``haictl fs umount``: the cluster as a POSIX file system through a FUSE daemon."""

from __future__ import annotations

import os
import sys

import click

from fireflyer.cli.fs_common import _fail, resolve_mgmtd


@click.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--read-only", is_flag=True, help="writes fail with EROFS")
@click.option(
    "--allow-other", is_flag=True, help="let other users use the mount (the default for a root mount)"
)
@click.option("--private", is_flag=True, help="only the mounting user may use the mount")
@click.option("--timeout-s", default=30.0, show_default=True, help="per-request cluster timeout, then EIO")
@click.option("--local-root", hidden=True, help="serve a local directory instead (measures FUSE alone)")
@click.pass_context
def mount(
    ctx: click.Context,
    mountpoint: str,
    read_only: bool,
    allow_other: bool,
    private: bool,
    timeout_s: float,
    local_root: str | None,
) -> None:
    """Mount the cluster at MOUNTPOINT as a POSIX file system (FUSE daemon in the background).

    A root mount is shared by every user of the node (the kernel checks each one's permissions);
    --private keeps it to the mounting user.

    \b
    Example:
      haictl fs --mgmtd 10.0.0.1:7000 mount /mnt/fs3
    """
    from fs3.fuse.mount import mount_detached

    mgmtd = None if local_root else resolve_mgmtd(ctx.obj.get("mgmtd"))
    extra = ["--timeout-s", str(timeout_s)]
    if read_only:
        extra.append("--read-only")
    if allow_other:
        extra.append("--allow-other")
    if private:
        extra.append("--private")
    os.makedirs(mountpoint, exist_ok=True)
    try:
        pid, log = mount_detached(mountpoint, mgmtd=mgmtd, local_root=local_root, extra=extra)
    except (OSError, RuntimeError, TimeoutError) as exc:
        _fail(exc)
    click.echo(
        f"mounted {mgmtd or local_root} at {os.path.abspath(mountpoint)} (daemon pid {pid}, log {log})"
    )


@click.command()
@click.argument("mountpoint", type=click.Path())
def umount(mountpoint: str) -> None:
    """Unmount MOUNTPOINT and stop its daemon; lazy if busy or the cluster is gone.

    \b
    Example:
      haictl fs umount /mnt/fs3
    """
    from fs3.fuse.mount import unmount_and_stop

    try:
        was = unmount_and_stop(mountpoint)
    except OSError as exc:
        _fail(exc)
    if not was:
        click.echo(f"{mountpoint} was not mounted", err=True)
        sys.exit(1)
    click.echo(f"unmounted {os.path.abspath(mountpoint)}")
