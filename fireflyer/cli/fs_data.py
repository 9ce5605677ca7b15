"""``haictl fs cp`` and ``haictl fs pack``: moving bytes to, from and within the cluster, with progress."""

from __future__ import annotations

import os
import stat as stat_mod
import sys
import time
from typing import Any

import click

from fireflyer.cli.fs_common import (
    _PREFIX,
    _client,
    _human,
    _is_remote,
    _join,
    _parse_size,
    _remote,
    _reported,
)


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


@click.command()
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


@click.command()
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
