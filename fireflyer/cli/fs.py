"""``haictl fs``: the fs3 cluster from a shell: ls, stat, cp, rm, mkdir, mv, df, status, pack, bench, mount, umount.

Cluster paths are absolute (``/data/x``); in ``cp`` and ``pack`` a cluster path is written ``fs3:/data/x``
and anything else is local. The cluster is found through ``--mgmtd``, then ``$FS3_MGMTD``, then
``mgmtd = "host:port"`` in the client config that ``haictl up`` writes (``$HAI_CLIENT_CONFIG``, else
``~/.config/fireflyer/client.toml``).
"""

from __future__ import annotations

import json
import os
import stat as stat_mod
import time
from typing import Any

import click

from fireflyer.cli.fs_bench import bench_cmd
from fireflyer.cli.fs_common import _client, _join, _remote, _reported, resolve_mgmtd
from fireflyer.cli.fs_data import cp, pack
from fireflyer.cli.fs_mount import mount, umount
from fireflyer.cli.fs_report import df, status_cmd

__all__ = ["fs", "resolve_mgmtd"]


@click.group()
@click.option("--mgmtd", envvar="FS3_MGMTD", help="cluster manager HOST:PORT (default $FS3_MGMTD or config)")
@click.pass_context
def fs(ctx: click.Context, mgmtd: str | None) -> None:
    """Use the fs3 file system: list, copy, pack datasets, mount, benchmark.

    \b
    Example:
      haictl fs --mgmtd 127.0.0.1:7000 ls /
      haictl fs cp ./train.bin fs3:/data/train.bin
      haictl fs mount /mnt/fs3
    """
    ctx.ensure_object(dict)["mgmtd"] = mgmtd


# --- namespace ---------------------------------------------------------------------------------


def _type_name(st: Any) -> str:
    if st.is_dir():
        return "dir"
    if st.is_symlink():
        return "symlink"
    return "file" if st.is_file() else "other"


def _stat_dict(st: Any, path: str) -> dict[str, Any]:
    """The JSON form of a ``FileStat`` (``mode`` is the permission bits as an octal string)."""
    d: dict[str, Any] = {
        "path": path,
        "inode": st.st_ino,
        "type": _type_name(st),
        "mode": f"{stat_mod.S_IMODE(st.st_mode):04o}",
        "uid": st.st_uid,
        "gid": st.st_gid,
        "nlink": st.st_nlink,
        "size": st.st_size,
        "atime": st.st_atime,
        "mtime": st.st_mtime,
        "ctime": st.st_ctime,
    }
    if st.is_file():
        d |= {"chunk_size": st.chunk_size, "stripe": st.stripe, "chains": list(st.chains)}
    if st.is_symlink():
        d["target"] = st.symlink_target
    return d


@fs.command()
@click.argument("path", default="/")
@click.option("-l", "long_", is_flag=True, help="long listing: mode, owner, size, mtime")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def ls(ctx: click.Context, path: str, long_: bool, as_json: bool) -> None:
    """List a cluster directory (or show one file).

    \b
    Example:
      haictl fs ls -l /data
    """
    path = _remote(path)
    with _reported():
        c = _client(ctx)
        st = c.stat(path)
        if st.is_dir():
            names = [e.name for e in c.scandir(path)]
            full = [_join(path, n) for n in names]
        else:
            names, full = [os.path.basename(path)], [path]
        rows = []
        if long_ or as_json:
            for n, f in zip(names, full, strict=True):
                try:
                    rows.append(_stat_dict(c.lstat(f), f) | {"name": n})
                except FileNotFoundError:
                    continue  # removed since the listing
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not long_:
        for n in names:
            click.echo(n)
        return
    for r in rows:
        ftype = {"dir": stat_mod.S_IFDIR, "symlink": stat_mod.S_IFLNK}.get(r["type"], stat_mod.S_IFREG)
        mode = stat_mod.filemode(ftype | int(r["mode"], 8))
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["mtime"]))
        name = f"{r['name']} -> {r['target']}" if r["type"] == "symlink" else r["name"]
        click.echo(f"{mode} {r['nlink']:>3} {r['uid']:>5} {r['gid']:>5} {r['size']:>12} {when} {name}")


@fs.command("stat")
@click.argument("paths", nargs=-1, required=True)
@click.pass_context
def stat_cmd(ctx: click.Context, paths: tuple[str, ...]) -> None:
    """Show inode, type, mode, owner, size, times (and a file's layout) as JSON.

    \b
    Example:
      haictl fs stat /data/train.pack
    """
    remote = [_remote(p) for p in paths]
    with _reported():
        c = _client(ctx)
        out = [_stat_dict(c.stat(p), p) for p in remote]
    click.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2))


@fs.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-p", "--parents", is_flag=True, help="make parents as needed; no error if it exists")
@click.option("-m", "--mode", default="755", help="permission bits (octal)")
@click.pass_context
def mkdir(ctx: click.Context, paths: tuple[str, ...], parents: bool, mode: str) -> None:
    """Create directories.

    \b
    Example:
      haictl fs mkdir -p /data/imagenet
    """
    try:
        bits = int(mode, 8)
    except ValueError:
        raise click.BadParameter(f"not an octal mode: {mode!r}", param_hint="--mode") from None
    remote = [_remote(p) for p in paths]
    with _reported():
        c = _client(ctx)
        for p in remote:
            c.mkdir(p, mode=bits, parents=parents)


@fs.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="remove directories and their contents")
@click.option("-f", "--force", is_flag=True, help="ignore missing paths")
@click.pass_context
def rm(ctx: click.Context, paths: tuple[str, ...], recursive: bool, force: bool) -> None:
    """Remove files (and with -r, directory trees; symlinks are removed, not followed).

    \b
    Example:
      haictl fs rm -r /data/old
    """
    remote = [_remote(p) for p in paths]
    with _reported():
        c = _client(ctx)
        for p in remote:
            try:
                _remove(c, p, recursive)
            except FileNotFoundError:
                if not force:
                    raise


def _remove(c: Any, path: str, recursive: bool) -> None:
    if path.rstrip("/") == "":
        raise IsADirectoryError(21, "refusing to remove the root directory", "/")
    st = c.lstat(path)
    if not st.is_dir():
        c.unlink(path)
        return
    if not recursive:
        raise IsADirectoryError(21, "is a directory (use -r to remove it and its contents)", path)
    for e in c.scandir(path):
        child = _join(path, e.name)
        if e.type == 2:
            _remove(c, child, True)
        else:
            c.unlink(child)
    c.rmdir(path)


@fs.command()
@click.argument("src")
@click.argument("dst")
@click.pass_context
def mv(ctx: click.Context, src: str, dst: str) -> None:
    """Rename atomically within the cluster (into DST if it is a directory).

    \b
    Example:
      haictl fs mv /data/tmp.pack /data/train.pack
    """
    src, dst = _remote(src), _remote(dst)
    with _reported():
        c = _client(ctx)
        try:
            if c.stat(dst).is_dir():
                dst = _join(dst, os.path.basename(src.rstrip("/")))
        except FileNotFoundError:
            pass
        c.rename(src, dst)


# df/status (fs_report), cp/pack (fs_data), mount/umount (fs_mount) and bench (fs_bench) live in
# modules of their own; the group lists them all.
for _cmd in (df, status_cmd, cp, pack, mount, umount, bench_cmd):
    fs.add_command(_cmd)
