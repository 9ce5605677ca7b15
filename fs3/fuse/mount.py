"""Start and stop the FUSE daemon as its own process, and tell whether a path is mounted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from fireflyer.launcher import Launcher, ManagedProcess


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def is_mounted(mountpoint: str | os.PathLike) -> bool:
    """Whether ``mountpoint`` is currently a mount point (per /proc/self/mountinfo)."""
    target = os.path.abspath(os.fspath(mountpoint))
    try:
        with open("/proc/self/mountinfo") as f:
            return any(_unescape(line.split()[4]) == target for line in f)
    except OSError:
        return False


def wait_for_mount(
    mountpoint: str | os.PathLike,
    proc: ManagedProcess | subprocess.Popen | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Block until ``mountpoint`` is mounted; raise if the daemon exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    popen = proc.popen if isinstance(proc, ManagedProcess) else proc
    while time.monotonic() < deadline:
        if is_mounted(mountpoint):
            return
        if popen is not None and popen.poll() is not None:
            log = proc.log_text()[-3000:] if isinstance(proc, ManagedProcess) else ""
            raise RuntimeError(f"fs3 FUSE daemon exited with {popen.returncode} before mounting\n{log}")
        time.sleep(0.05)
    raise TimeoutError(f"{mountpoint} was not mounted within {timeout_s:.0f} s")


def daemon_argv(
    mountpoint: str,
    *,
    mgmtd: str | None = None,
    local_root: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of the FUSE daemon for ``mountpoint``."""
    argv = [sys.executable, "-m", "fs3.fuse"]
    if mgmtd:
        argv += ["--mgmtd", mgmtd]
    if local_root:
        argv += ["--local-root", local_root]
    return argv + list(extra) + [mountpoint]


def mount(
    launcher: Launcher,
    mountpoint: str,
    *,
    mgmtd: str | None = None,
    local_root: str | None = None,
    name: str = "fs3-fuse",
    extra: Sequence[str] = (),
    timeout_s: float = 30.0,
) -> ManagedProcess:
    """Start the FUSE daemon under ``launcher`` and wait until ``mountpoint`` is mounted."""
    Path(mountpoint).mkdir(parents=True, exist_ok=True)
    proc = launcher.start(name, daemon_argv(mountpoint, mgmtd=mgmtd, local_root=local_root, extra=extra))
    try:
        wait_for_mount(mountpoint, proc, timeout_s)
    except BaseException:
        launcher.stop(name, grace_s=2)
        unmount(mountpoint, lazy=True)
        raise
    return proc


def unmount(mountpoint: str | os.PathLike, *, lazy: bool = False, timeout_s: float = 20.0) -> None:
    """Unmount with ``fusermount3 -u`` (``-z`` if ``lazy`` or if the plain unmount fails: busy or dead daemon)."""
    mp = os.fspath(mountpoint)
    if not is_mounted(mp):
        return
    fusermount = shutil.which("fusermount3") or "fusermount3"
    attempts = (
        [[fusermount, "-u", "-z", mp]] if lazy else [[fusermount, "-u", mp], [fusermount, "-u", "-z", mp]]
    )
    err = ""
    for argv in attempts:
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            err = f"{' '.join(argv)} timed out"
            continue
        if res.returncode == 0 or not is_mounted(mp):
            return
        err = res.stderr.strip()
    if is_mounted(mp):
        # last resort for root: the kernel's own lazy detach
        res = subprocess.run(["umount", "-l", mp], capture_output=True, text=True, timeout=timeout_s)
        if is_mounted(mp):
            raise OSError(f"cannot unmount {mp}: {err or res.stderr.strip()}")
