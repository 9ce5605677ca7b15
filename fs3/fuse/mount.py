"""Start and stop the FUSE daemon as its own process, and tell whether a path is mounted."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ffcommon.launcher import Launcher, ManagedProcess


def _unescape(field: str) -> str:
    return field.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def is_mounted(mountpoint: str | os.PathLike) -> bool:
    """Whether ``mountpoint`` is currently a mount point (per /proc/self/mountinfo)."""
    return mount_device(mountpoint) is not None


def mount_device(mountpoint: str | os.PathLike) -> str | None:
    """``"major:minor"`` of the file system mounted at ``mountpoint`` (the last one), or None if none is."""
    target = os.path.abspath(os.fspath(mountpoint))
    found = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if _unescape(fields[4]) == target:
                    found = fields[2]
    except OSError:
        return None
    return found


def set_readahead_kb(mountpoint: str | os.PathLike, kb: int) -> int | None:
    """Set the kernel's read-ahead of the mount at ``mountpoint`` to ``kb`` KiB; the value now in effect.

    FUSE mounts get the block-device default of 128 KiB, so a sequential reader's requests reach the
    daemon 128 KiB at a time, each a FUSE and a storage round trip; a larger window makes the kernel
    send 1 MiB requests (the FUSE max_pages), several at once. Needs root (sysfs); None if refused.
    """
    dev = mount_device(mountpoint)
    if dev is None:
        return None
    path = Path("/sys/class/bdi") / dev / "read_ahead_kb"
    try:
        path.write_text(f"{kb}\n")
        return int(path.read_text())
    except (OSError, ValueError):
        return None


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


def state_dir() -> Path:
    """Where detached mounts keep their pid files and logs."""
    base = os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
    d = Path(base) / "fireflyer-fs3-mounts"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _key(mountpoint: str) -> str:
    import hashlib

    return hashlib.sha1(os.path.abspath(mountpoint).encode()).hexdigest()[:16]


def pid_file_for(mountpoint: str) -> Path:
    """The pid file of the daemon serving ``mountpoint`` (when started by ``mount_detached``)."""
    return state_dir() / f"{_key(mountpoint)}.pid"


def mount_detached(
    mountpoint: str,
    *,
    mgmtd: str | None = None,
    local_root: str | None = None,
    extra: Sequence[str] = (),
    timeout_s: float = 30.0,
) -> tuple[int, Path]:
    """Start a daemon that outlives this process (``haictl fs mount``); returns its pid and log path."""
    mp = os.path.abspath(mountpoint)
    if is_mounted(mp):
        raise FileExistsError(f"{mp} is already a mount point")
    if not os.path.isdir(mp):
        raise NotADirectoryError(f"mountpoint {mp} is not a directory")
    log_path = state_dir() / f"{_key(mp)}.log"
    argv = daemon_argv(
        mp, mgmtd=mgmtd, local_root=local_root, extra=[*extra, "--pid-file", str(pid_file_for(mp))]
    )
    with open(log_path, "ab") as log:
        popen = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        wait_for_mount(mp, popen, timeout_s)
    except BaseException as exc:
        popen.kill()
        popen.wait(5)
        unmount(mp, lazy=True)
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{exc}\n--- {log_path} ---\n{tail}") from exc
    return popen.pid, log_path


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, exited but not yet reaped, counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def unmount_and_stop(mountpoint: str, *, timeout_s: float = 10.0) -> bool:
    """Unmount (lazily if busy or the cluster is gone) and stop the daemon; True if a mount was removed."""
    mp = os.path.abspath(mountpoint)
    was = is_mounted(mp)
    unmount(mp)
    pf = pid_file_for(mp)
    try:
        pid = int(pf.read_text().strip())
    except (FileNotFoundError, ValueError):
        return was
    deadline = time.monotonic() + timeout_s
    sig = 15
    while _alive(pid):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        if time.monotonic() > deadline:
            if sig == 9:
                break
            sig, deadline = 9, time.monotonic() + 5
        time.sleep(0.1)
    pf.unlink(missing_ok=True)
    return was
