"""``haictl fs``: the fs3 cluster from a shell: ls, stat, cp, rm, mkdir, mv, df, status, pack, bench, mount, umount.

Cluster paths are absolute (``/data/x``); in ``cp`` and ``pack`` a cluster path is written ``fs3:/data/x``
and anything else is local. The cluster is found through ``--mgmtd``, then ``$FS3_MGMTD``, then
``mgmtd = "host:port"`` in the client config that ``haictl up`` writes (``$HAI_CLIENT_CONFIG``, else
``~/.config/fireflyer/client.toml``).
"""

from __future__ import annotations

import contextlib
import json
import os
import stat as stat_mod
import sys
import time
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from ffcommon.bench import parse_size

_PREFIX = "fs3:"


def resolve_mgmtd(option: str | None) -> str:
    """The mgmtd address from the option, the environment or the client config, or an error saying where it looked."""
    from fireflyer.config import client_config_path, read_client_config
    from fireflyer.errors import ConfigError

    if option:
        return option
    if os.environ.get("FS3_MGMTD"):
        return os.environ["FS3_MGMTD"]
    try:
        data = read_client_config()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    addr = data.get("mgmtd") or data.get("fs3", {}).get("mgmtd")
    if addr:
        return str(addr)
    where = client_config_path()
    state = "has no mgmtd" if where.exists() else "does not exist"
    raise click.UsageError(
        f"no cluster address: no --mgmtd, FS3_MGMTD is not set and {where} {state}; "
        'run haictl up, pass --mgmtd HOST:PORT, set FS3_MGMTD, or put mgmtd = "host:port" in it'
    )


def _client(ctx: click.Context) -> Any:
    """The ``FS3Client`` of this invocation (connected once, closed with the command).

    A cluster that cannot be reached is reported as one line on stderr and exit status 1.
    """
    obj = ctx.ensure_object(dict)
    if "client" not in obj:
        from fs3.client import FS3Client

        addr = resolve_mgmtd(obj.get("mgmtd"))
        try:
            obj["client"] = FS3Client(addr)
        except OSError as exc:
            click.echo(f"haictl fs: cannot reach the fs3 cluster at {addr}: {_reason(exc)}", err=True)
            sys.exit(1)
        ctx.call_on_close(obj["client"].close)
    return obj["client"]


def _is_remote(p: str) -> bool:
    return p.startswith(_PREFIX)


def _remote(p: str) -> str:
    p = p[len(_PREFIX) :] if _is_remote(p) else p
    if not p.startswith("/"):
        raise click.BadParameter(f"cluster path must be absolute: {p!r}")
    return p


def _reason(exc: BaseException) -> str:
    """``exc`` as a short human message: ``strerror`` for an OSError, ``str`` otherwise."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fail(exc: BaseException) -> NoReturn:
    """Report ``exc`` as ``haictl fs: PATH: reason`` on stderr (no traceback) and exit with status 1."""
    name = getattr(exc, "filename", None)
    click.echo(f"haictl fs: {name}: {_reason(exc)}" if name else f"haictl fs: {_reason(exc)}", err=True)
    sys.exit(1)


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Turn file-system errors (OSError, fs3's FS3Error) raised inside into a one-line failure."""
    try:
        yield
    except OSError as exc:
        _fail(exc)


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


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


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


def _df_info(c: Any) -> dict[str, Any]:
    """Cluster capacity (``statfs``) plus every target's state and usage (``target_usage``)."""
    from dataclasses import asdict

    sf = c.statfs()
    return {
        "total_bytes": sf.total_bytes,
        "free_bytes": sf.free_bytes,
        "used_bytes": sf.total_bytes - sf.free_bytes,
        "file_bytes": sf.used_bytes,
        "inodes": sf.inodes,
        "targets": [asdict(t) for t in c.target_usage()],
    }


@fs.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def df(ctx: click.Context, as_json: bool) -> None:
    """Capacity of the cluster and the state and usage of each storage target.

    Size/Used/Avail are the storage disks (each node's disk counted once, replicas included);
    Files is the sum of file sizes in the namespace; per target, used is its stored chunk bytes and
    disk/avail its file system (a target under its reserve is read-only for new chunks).

    \b
    Example:
      haictl fs df
    """
    with _reported():
        info = _df_info(_client(ctx))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    total, free, used = info["total_bytes"], info["free_bytes"], info["used_bytes"]
    pct = f"{100 * used / total:.0f}%" if total else "-"
    click.echo(f"{'Filesystem':<12}{'Size':>12}{'Used':>12}{'Avail':>12}{'Use%':>6}{'Files':>12}  Inodes")
    click.echo(
        f"{'fs3':<12}{_human(total):>12}{_human(used):>12}{_human(free):>12}{pct:>6}"
        f"{_human(info['file_bytes']):>12}  {info['inodes']}"
    )
    click.echo(
        f"\n{'target':>8} {'node':>6} {'chain':>6} {'state':<9}{'chunks':>8}{'used':>12}{'disk':>12}{'avail':>12}"
        "  address (data port)"
    )
    for t in info["targets"]:
        chunks = "-" if t["chunks"] is None else str(t["chunks"])
        tused = "-" if t["used_bytes"] is None else _human(t["used_bytes"])
        addr = t["address"] + (f" ({t['data_address']})" if t["data_address"] else "")
        addr += "" if t["alive"] else " (dead)"
        addr += " (read-only: under its reserve)" if t.get("read_only") else ""
        addr += _scrub_note(t)
        disk = "-" if t["disk_total_bytes"] is None else _human(t["disk_total_bytes"])
        avail = "-" if t["disk_free_bytes"] is None else _human(t["disk_free_bytes"])
        click.echo(
            f"{t['target_id']:>8} {t['node_id']:>6} {t['chain_id']:>6} {t['state']:<9}{chunks:>8}{tused:>12}"
            f"{disk:>12}{avail:>12}  {addr}"
        )


def _scrub_note(t: dict[str, Any]) -> str:
    """`` (scrub: 2 corrupt found, 1 repaired, 1 waiting)`` for a target whose scrub found anything."""
    if not t.get("corrupt_chunks"):
        return ""
    waiting = f", {t['unrepaired_chunks']} waiting for a good copy" if t.get("unrepaired_chunks") else ""
    return f" (scrub: {t['corrupt_chunks']} corrupt found, {t.get('repaired_chunks') or 0} repaired{waiting})"


def _status_info(c: Any) -> dict[str, Any]:
    """Every chain with its targets in chain order (head first): state, node, liveness and capacity,
    plus the repairs the cluster reports (resyncs of SYNCING targets, corrupt chunks not repaired yet)."""
    routing = c.refresh_routing()
    usage = {t.target_id: t for t in c.target_usage(exact_bytes=False)}
    chains, repairs = [], []
    for chain in sorted(routing.chains, key=lambda ch: ch.chain_id):
        targets = []
        for t in chain.targets:
            u = usage.get(t.target_id)
            state = u.state if u else str(t.state)
            targets.append({
                "target_id": t.target_id, "node_id": t.node_id, "state": state,
                "alive": bool(u and u.alive), "address": u.address if u else "",
                "chunks": u.chunks if u else None, "disk_total_bytes": u.disk_total_bytes if u else None,
                "disk_free_bytes": u.disk_free_bytes if u else None,
                "reserve_bytes": u.reserve_bytes if u else None, "read_only": u.read_only if u else None,
                "corrupt_chunks": u.corrupt_chunks if u else None,
                "repaired_chunks": u.repaired_chunks if u else None,
                "unrepaired_chunks": u.unrepaired_chunks if u else None,
            })  # fmt: skip
            if state == "SYNCING":
                repairs.append({"kind": "resync", "chain_id": chain.chain_id, "target_id": t.target_id})
            if u and u.unrepaired_chunks:
                repairs.append({"kind": "chunk repair", "chain_id": chain.chain_id, "target_id": t.target_id,
                                "chunks": u.unrepaired_chunks})  # fmt: skip
        serving = sum(t["state"] == "SERVING" for t in targets)
        chains.append({"chain_id": chain.chain_id, "version": chain.version, "serving": serving,
                       "replicas": len(targets), "targets": targets})  # fmt: skip
    return {
        "mgmtd_leader": c.routing_cache.mgmtd_leader,  # the instance that answered, of mgmtd_instances
        "mgmtd_instances": c.routing_cache.mgmtd_addresses,
        "routing_version": routing.routing_version,
        "chunk_size": routing.chunk_size,
        "stripe": routing.stripe,
        "chains": chains,
        "repairs": repairs,
    }


@fs.command("status")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """Health of the cluster: each chain's targets (head first) with state, node, capacity; repairs.

    A chain is degraded when fewer of its targets are SERVING than it has replicas; a SYNCING
    target is being resynced from its predecessor (listed under repairs); a target whose free space
    fell under its reserve is read-only (new chunks get ENOSPC). Exit status 1 when a chain has no
    SERVING target (its data cannot be read).

    \b
    Example:
      haictl fs status
    """
    with _reported():
        info = _status_info(_client(ctx))
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(
            f"routing version {info['routing_version']}, {len(info['chains'])} chains, "
            f"chunk size {_human(info['chunk_size'])}, stripe {info['stripe']}"
        )
        standbys = [a for a in info["mgmtd_instances"] if a != info["mgmtd_leader"]]
        click.echo(
            f"mgmtd leader {info['mgmtd_leader']}" + (f", standbys {', '.join(standbys)}" if standbys else "")
        )
        for ch in info["chains"]:
            health = (
                "ok" if ch["serving"] == ch["replicas"] else "DEGRADED" if ch["serving"] else "UNAVAILABLE"
            )
            click.echo(
                f"\nchain {ch['chain_id']} (version {ch['version']}): {ch['serving']}/{ch['replicas']} serving, {health}"
            )
            click.echo(
                f"  {'target':>8} {'node':>6} {'state':<9}{'chunks':>8}{'disk free':>12}{'disk size':>12}  address"
            )
            for t in ch["targets"]:
                chunks = "-" if t["chunks"] is None else str(t["chunks"])
                free = "-" if t["disk_free_bytes"] is None else _human(t["disk_free_bytes"])
                size = "-" if t["disk_total_bytes"] is None else _human(t["disk_total_bytes"])
                addr = t["address"] + ("" if t["alive"] else " (dead)")
                addr += " (read-only: free space under its reserve)" if t["read_only"] else ""
                addr += _scrub_note(t)
                click.echo(
                    f"  {t['target_id']:>8} {t['node_id']:>6} {t['state']:<9}{chunks:>8}{free:>12}{size:>12}  {addr}"
                )
        click.echo("\nrepairs in progress:")
        for r in info["repairs"]:
            chunks = f": {r['chunks']} corrupt chunks" if r.get("chunks") else ""
            click.echo(f"  {r['kind']} of target {r['target_id']} (chain {r['chain_id']}){chunks}")
        if not info["repairs"]:
            click.echo("  none")
    if any(ch["serving"] == 0 for ch in info["chains"]):
        sys.exit(1)


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
    for p in (src, dst):
        if _is_remote(p):
            _remote(p)  # absolute, or a usage error
    block = _parse_size(block_size)
    if progress is None:
        progress = sys.stderr.isatty()
    with _reported():
        c = _client(ctx)
        src_st = c.stat(_remote(src)) if _is_remote(src) else os.stat(src)
        if stat_mod.S_ISDIR(src_st.st_mode):
            raise IsADirectoryError(21, "is a directory (cp copies one file; `pack` packs a directory)", src)
        src_name = os.path.basename((_remote(src) if _is_remote(src) else src).rstrip("/"))
        if _is_remote(dst):
            try:
                if c.stat(_remote(dst)).is_dir():
                    dst = _PREFIX + _join(_remote(dst), src_name)
            except FileNotFoundError:
                pass
        elif os.path.isdir(dst):
            dst = os.path.join(dst, src_name)
        if _is_remote(src) and _is_remote(dst) and c.exists(_remote(dst)):
            if c.stat(_remote(dst)).st_ino == src_st.st_ino:
                raise OSError(22, "source and destination are the same file", dst)
        summary = _copy_file(c, src, dst, block, progress)
    click.echo(f"{src} -> {dst}: {summary}")


def _parse_size(s: str) -> int:
    return parse_size(s, click.BadParameter)


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
    from fs3.dataset import PackedReader, pack_directory

    path = _remote(dst) if _is_remote(dst) else dst
    if progress is None:
        progress = sys.stderr.isatty()

    def show(k: int, total: int) -> None:
        if progress:
            click.echo(f"\rpacked {k} files, {_human(total)}", err=True, nl=False)

    with _reported():
        client = _client(ctx) if _is_remote(dst) else None
        t0 = time.perf_counter()
        total = pack_directory(src_dir, path, client=client, progress=show)
        dt = time.perf_counter() - t0
        if progress:
            click.echo("", err=True)
        with PackedReader.open(path, client=client) as r:
            n = len(r)
    click.echo(f"{dst}: {n} samples, {_human(total)} in {dt:.2f} s ({total / max(dt, 1e-9) / 1e6:.1f} MB/s)")


# --- mount -------------------------------------------------------------------------------------


@fs.command()
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


# --- bench -------------------------------------------------------------------------------------


@fs.command("bench")
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
