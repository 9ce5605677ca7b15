"""``haictl fs``: the fs3 cluster from a shell: ls, stat, cp, rm, mkdir, mv, df, pack, bench, mount, umount.

Cluster paths are absolute (``/data/x``); in ``cp`` and ``pack`` a cluster path is written ``fs3:/data/x``
and anything else is local. The cluster is found through ``--mgmtd``, then ``$FS3_MGMTD``, then
``mgmtd = "host:port"`` in ``~/.config/fireflyer/client.toml``.
"""

from __future__ import annotations

import json
import os
import stat as stat_mod
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import click

CONFIG_PATH = Path("~/.config/fireflyer/client.toml")
_PREFIX = "fs3:"


def resolve_mgmtd(option: str | None) -> str:
    """The mgmtd address from the option, the environment or the config file, or a clear error."""
    if option:
        return option
    if os.environ.get("FS3_MGMTD"):
        return os.environ["FS3_MGMTD"]
    cfg = CONFIG_PATH.expanduser()
    if cfg.exists():
        try:
            data = tomllib.loads(cfg.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise click.UsageError(f"{cfg}: {exc}") from exc
        addr = data.get("mgmtd") or data.get("fs3", {}).get("mgmtd")
        if addr:
            return str(addr)
    raise click.UsageError(
        f'no cluster address: pass --mgmtd HOST:PORT, set FS3_MGMTD, or put mgmtd = "host:port" in {cfg}'
    )


def _client(ctx: click.Context) -> Any:
    obj = ctx.ensure_object(dict)
    if "client" not in obj:
        from fs3.client import FS3Client

        obj["client"] = FS3Client(resolve_mgmtd(obj.get("mgmtd")))
        ctx.call_on_close(obj["client"].close)
    return obj["client"]


def _is_remote(p: str) -> bool:
    return p.startswith(_PREFIX)


def _remote(p: str) -> str:
    p = p[len(_PREFIX) :] if _is_remote(p) else p
    if not p.startswith("/"):
        raise click.BadParameter(f"cluster path must be absolute: {p!r}")
    return p


def _fail(exc: BaseException) -> None:
    click.echo(f"haictl fs: {exc}", err=True)
    sys.exit(1)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


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


def _stat_dict(st: Any, path: str) -> dict[str, Any]:
    return {
        "path": path,
        "inode": st.inode_id,
        "type": st.type_name,
        "mode": f"{stat_mod.S_IMODE(st.mode):04o}",
        "uid": st.uid,
        "gid": st.gid,
        "nlink": st.nlink,
        "size": st.size,
        "atime": st.atime,
        "mtime": st.mtime,
        "ctime": st.ctime,
    }


@fs.command()
@click.argument("path", default="/")
@click.option("-l", "long_", is_flag=True, help="long listing: mode, owner, size, mtime")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def ls(ctx: click.Context, path: str, long_: bool, as_json: bool) -> None:
    """List a cluster directory.

    \b
    Example:
      haictl fs ls -l /data
    """
    c = _client(ctx)
    path = _remote(path)
    try:
        st = c.stat(path)
        names = [os.path.basename(path)] if st.type_name != "dir" else sorted(c.listdir(path))
        base = os.path.dirname(path) if st.type_name != "dir" else path
        rows = []
        for n in names:
            full = os.path.join(base, n)
            rows.append(_stat_dict(c.stat(full) if (long_ or as_json) else st, full) | {"name": n})
    except OSError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        if long_:
            t = {"dir": "d", "symlink": "l"}.get(r["type"], "-")
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["mtime"]))
            click.echo(
                f"{t}{r['mode']} {r['nlink']:>3} {r['uid']:>5} {r['gid']:>5} {r['size']:>12} {when} {r['name']}"
            )
        else:
            click.echo(r["name"])


@fs.command("stat")
@click.argument("paths", nargs=-1, required=True)
@click.pass_context
def stat_cmd(ctx: click.Context, paths: tuple[str, ...]) -> None:
    """Show inode, type, mode, owner, size and times as JSON.

    \b
    Example:
      haictl fs stat /data/train.pack
    """
    c = _client(ctx)
    try:
        out = [_stat_dict(c.stat(_remote(p)), _remote(p)) for p in paths]
    except OSError as exc:
        _fail(exc)
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
    c = _client(ctx)
    try:
        for p in paths:
            c.mkdir(_remote(p), mode=int(mode, 8), parents=parents)
    except OSError as exc:
        _fail(exc)


@fs.command()
@click.argument("paths", nargs=-1, required=True)
@click.option("-r", "--recursive", is_flag=True, help="remove directories and their contents")
@click.option("-f", "--force", is_flag=True, help="ignore missing paths")
@click.pass_context
def rm(ctx: click.Context, paths: tuple[str, ...], recursive: bool, force: bool) -> None:
    """Remove files (and with -r, directory trees).

    \b
    Example:
      haictl fs rm -r /data/old
    """
    c = _client(ctx)
    for p in paths:
        try:
            _remove(c, _remote(p), recursive)
        except FileNotFoundError as exc:
            if not force:
                _fail(exc)
        except OSError as exc:
            _fail(exc)


def _remove(c: Any, path: str, recursive: bool) -> None:
    st = c.stat(path)
    if st.type_name != "dir":
        c.unlink(path)
        return
    if not recursive:
        raise IsADirectoryError(21, "is a directory (use -r)", path)
    for name in c.listdir(path):
        _remove(c, f"{path.rstrip('/')}/{name}", True)
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
    c = _client(ctx)
    src, dst = _remote(src), _remote(dst)
    try:
        try:
            if c.stat(dst).type_name == "dir":
                dst = f"{dst.rstrip('/')}/{os.path.basename(src)}"
        except FileNotFoundError:
            pass
        c.rename(src, dst)
    except OSError as exc:
        _fail(exc)


@fs.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def df(ctx: click.Context, as_json: bool) -> None:
    """Capacity of the cluster and usage of each storage target.

    \b
    Example:
      haictl fs df
    """
    c = _client(ctx)
    try:
        info = c.capacity()
    except OSError as exc:
        _fail(exc)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    total, free = info["total_bytes"], info["free_bytes"]
    used = total - free
    click.echo(f"{'Filesystem':<12}{'Size':>12}{'Used':>12}{'Avail':>12}{'Use%':>6}  Inodes")
    pct = f"{100 * used / total:.0f}%" if total else "-"
    click.echo(
        f"{'fs3':<12}{_human(total):>12}{_human(used):>12}{_human(free):>12}{pct:>6}  {info.get('inodes', '-')}"
    )
    targets = info.get("targets", [])
    if targets:
        click.echo(f"\n{'target':>8} {'node':>6} {'chain':>6} {'state':<9}{'chunks':>8}{'used':>12}")
        for t in targets:
            click.echo(
                f"{t['target_id']:>8} {t['node_id']:>6} {t.get('chain_id', '-'):>6} {t.get('state', '-'):<9}"
                f"{t.get('chunks', '-'):>8}{_human(t.get('used_bytes', 0)):>12}"
            )


# --- data --------------------------------------------------------------------------------------


class _Progress:
    """A one-line progress bar with throughput, on stderr (silent when not a terminal unless forced)."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label, self.enabled = total, label, enabled
        self.done = 0
        self.t0 = time.perf_counter()
        self._last = 0.0

    def update(self, n: int) -> None:
        self.done += n
        now = time.perf_counter()
        if self.enabled and (now - self._last > 0.2 or self.done >= self.total):
            self._last = now
            frac = self.done / self.total if self.total else 1.0
            bar = "#" * int(30 * frac)
            rate = self.done / max(now - self.t0, 1e-9)
            click.echo(
                f"\r{self.label} [{bar:<30}] {100 * frac:5.1f}% {_human(self.done)} {_human(rate)}/s",
                err=True,
                nl=False,
            )

    def finish(self) -> str:
        dt = time.perf_counter() - self.t0
        if self.enabled:
            click.echo("", err=True)
        return f"{_human(self.done)} in {dt:.2f} s ({self.done / max(dt, 1e-9) / 1e6:.1f} MB/s)"


def _copy_file(c: Any, src: str, dst: str, block: int, progress: bool) -> str:
    from fs3.pio import get_filesystem

    sfs = get_filesystem(c if _is_remote(src) else None)
    dfs = get_filesystem(c if _is_remote(dst) else None)
    s_path = _remote(src) if _is_remote(src) else src
    d_path = _remote(dst) if _is_remote(dst) else dst
    sf = sfs.open(s_path, "r")
    try:
        size = sf.size()
        bar = _Progress(size, os.path.basename(s_path), progress)
        df_ = dfs.open(d_path, "w")
        try:
            off = 0
            while off < size:
                data = sf.pread(off, min(block, size - off))
                if not data:
                    raise OSError(5, f"{s_path}: file shrank while copying (at {off} of {size})")
                df_.pwrite(data, off)
                off += len(data)
                bar.update(len(data))
            df_.fsync()
        finally:
            df_.close()
    finally:
        sf.close()
    return bar.finish()


@fs.command()
@click.argument("src")
@click.argument("dst")
@click.option("--block-size", default="8M", help="bytes per read/write (K/M suffix)")
@click.option("--progress/--no-progress", default=None, help="progress bar (default: if stderr is a tty)")
@click.pass_context
def cp(ctx: click.Context, src: str, dst: str, block_size: str, progress: bool | None) -> None:
    """Copy a file to, from or within the cluster, with a progress bar and the throughput.

    \b
    Example:
      haictl fs cp ./ckpt.bin fs3:/ckpt/ckpt.bin
      haictl fs cp fs3:/ckpt/ckpt.bin ./back.bin
    """
    if not _is_remote(src) and not _is_remote(dst):
        raise click.UsageError("one of SRC/DST must be a cluster path (fs3:/...)")
    c = _client(ctx)
    block = _parse_size(block_size)
    if progress is None:
        progress = sys.stderr.isatty()
    try:
        if _is_remote(dst):
            try:
                if c.stat(_remote(dst)).type_name == "dir":
                    dst = f"{dst.rstrip('/')}/{os.path.basename(src.removeprefix(_PREFIX))}"
            except FileNotFoundError:
                pass
        elif os.path.isdir(dst):
            dst = os.path.join(dst, os.path.basename(_remote(src)))
        summary = _copy_file(c, src, dst, block, progress)
    except OSError as exc:
        _fail(exc)
    click.echo(f"{src} -> {dst}: {summary}")


def _parse_size(s: str) -> int:
    s = s.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    try:
        n = int(float(s[:-1] if s[-1:] in "KMG" else s) * mult)
    except ValueError:
        raise click.BadParameter(f"not a size: {s!r}") from None
    if n <= 0:
        raise click.BadParameter(f"size must be positive: {s!r}")
    return n


@fs.command()
@click.argument("src_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("dst")
@click.option("--progress/--no-progress", default=None, help="progress bar (default: if stderr is a tty)")
@click.pass_context
def pack(ctx: click.Context, src_dir: str, dst: str, progress: bool | None) -> None:
    """Pack every file under a local directory into one dataset file (index + CRC32C per sample).

    DST is local, or on the cluster as fs3:/path. Samples are ordered by relative path, which is
    stored in the file (``PackedReader.metadata["names"]``).

    \b
    Example:
      haictl fs pack ./images fs3:/data/images.pack
    """
    from fs3.dataset import pack_directory

    client = _client(ctx) if _is_remote(dst) else None
    path = _remote(dst) if _is_remote(dst) else dst
    if progress is None:
        progress = sys.stderr.isatty()
    t0 = time.perf_counter()

    def show(k: int, total: int) -> None:
        if progress:
            click.echo(f"\rpacked {k} files, {_human(total)}", err=True, nl=False)

    try:
        total = pack_directory(src_dir, path, client=client, progress=show)
    except (OSError, ValueError) as exc:
        _fail(exc)
    if progress:
        click.echo("", err=True)
    dt = time.perf_counter() - t0
    from fs3.dataset import PackedReader

    with PackedReader.open(path, client=client) as r:
        n = len(r)
    click.echo(f"{dst}: {n} samples, {_human(total)} in {dt:.2f} s ({total / max(dt, 1e-9) / 1e6:.1f} MB/s)")


# --- mount -------------------------------------------------------------------------------------


@fs.command()
@click.argument("mountpoint", type=click.Path(file_okay=False))
@click.option("--read-only", is_flag=True, help="writes fail with EROFS")
@click.option("--allow-other", is_flag=True, help="let other users use the mount")
@click.option("--timeout-s", default=30.0, show_default=True, help="per-request cluster timeout, then EIO")
@click.option("--local-root", hidden=True, help="serve a local directory instead (measures FUSE alone)")
@click.pass_context
def mount(
    ctx: click.Context,
    mountpoint: str,
    read_only: bool,
    allow_other: bool,
    timeout_s: float,
    local_root: str | None,
) -> None:
    """Mount the cluster at MOUNTPOINT as a POSIX file system (FUSE daemon in the background).

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
    os.makedirs(mountpoint, exist_ok=True)
    try:
        pid, log = mount_detached(mountpoint, mgmtd=mgmtd, local_root=local_root, extra=extra)
    except (OSError, RuntimeError, TimeoutError) as exc:
        _fail(exc)
    click.echo(
        f"mounted {mgmtd or local_root} at {os.path.abspath(mountpoint)} (daemon pid {pid}, log {log})"
    )


@fs.command()
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
