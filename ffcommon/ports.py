"""TCP port helpers: pick a free port, wait until something listens on one."""

from __future__ import annotations

import collections
import socket
import subprocess
import threading
import time

# Ports this process handed out lately. The OS may give a just-closed port 0 bind the same number
# again, and a cluster picks all its ports before any server binds one: without this, mgmtd and a
# storage server were once given one port and the storage server died at start.
_HANDED_OUT: collections.deque[int] = collections.deque(maxlen=4096)
_HANDED_OUT_LOCK = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it), never one this process
    handed out among its last 4,096."""
    with _HANDED_OUT_LOCK:
        for _ in range(64):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((host, 0))
                port = s.getsockname()[1]
            if port not in _HANDED_OUT:
                _HANDED_OUT.append(port)
                return port
    raise RuntimeError(f"no free TCP port on {host} that this process has not handed out already")


def wait_for_port(
    host: str, port: int, timeout_s: float = 30.0, proc: subprocess.Popen | None = None
) -> None:
    """Block until ``host:port`` accepts TCP connections; raise if ``proc`` dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.args!r} exited with {proc.returncode} before listening on {port}"
            )
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout_s:.0f} s")
