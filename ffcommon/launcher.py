"""Starts and stops the real processes of a local cluster; used by ``haictl up`` and by the tests.

Every process runs in its own session (process group) with its output in a log file, so that
``stop_all`` can kill whole trees and nothing outlives its launcher, even after a failed test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ffcommon.ports import free_port, wait_for_port

__all__ = ["Launcher", "ManagedProcess", "free_port", "wait_for_port"]


@dataclass
class ManagedProcess:
    """One launched process: its name, Popen handle and log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def signal(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group (the process and its children)."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def log_text(self) -> str:
        """Everything the process has written so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""


@dataclass
class Launcher:
    """Owns a set of processes whose logs go under ``log_dir``; a context manager that stops them all."""

    log_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    procs: dict[str, ManagedProcess] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.log_dir = Path(self.log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike | None = None,
        port: tuple[str, int] | None = None,
        timeout_s: float = 30.0,
    ) -> ManagedProcess:
        """Start ``argv`` as ``name``; with ``port`` wait until it listens there."""
        if name in self.procs and self.procs[name].alive():
            raise RuntimeError(f"{name} is already running (pid {self.procs[name].pid})")
        full_env = dict(os.environ)
        full_env.update(self.env)
        full_env.update(env or {})
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")  # owned by the child from here on
        try:
            popen = subprocess.Popen(
                list(argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            log.close()
        proc = ManagedProcess(name, popen, log_path)
        self.procs[name] = proc
        if port is not None:
            self.wait_listening(name, port[0], port[1], timeout_s)
        return proc

    def wait_listening(self, name: str, host: str, port: int, timeout_s: float = 30.0) -> None:
        """Block until ``name`` listens on ``host:port``; else RuntimeError naming it, with its log's end."""
        proc = self.procs[name]
        try:
            wait_for_port(host, port, timeout_s, proc.popen)
        except Exception as exc:
            raise RuntimeError(
                f"{name} did not start: {exc}\n--- {proc.log_path} ---\n{proc.log_text()[-4000:]}"
            ) from exc

    def start_python(
        self, name: str, module: str, args: Sequence[str] = (), **kwargs: object
    ) -> ManagedProcess:
        """Start ``python -m module args`` with this interpreter."""
        return self.start(name, [sys.executable, "-m", module, *args], **kwargs)  # type: ignore[arg-type]

    def stop(self, name: str, grace_s: float = 5.0) -> None:
        """SIGTERM the process group of ``name``, SIGKILL it after ``grace_s``."""
        proc = self.procs.get(name)
        if proc is None:
            return
        if proc.alive():
            proc.signal(signal.SIGTERM)
            try:
                proc.popen.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                pass
        proc.signal(signal.SIGKILL)  # children that ignored SIGTERM, or outlived their parent
        try:
            proc.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def kill(self, name: str) -> None:
        """SIGKILL ``name`` at once, as a crash would."""
        proc = self.procs[name]
        proc.signal(signal.SIGKILL)
        proc.popen.wait(timeout=10)

    def stop_all(self, grace_s: float = 5.0) -> None:
        """Stop every process, newest first (clients before the services they use)."""
        for name in reversed(list(self.procs)):
            self.stop(name, grace_s)

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
