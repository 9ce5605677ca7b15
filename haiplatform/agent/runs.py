"""Starting, tracking and stopping this node's runs: each run's ranks under a per-run supervisor.

A run's supervisor (``haiplatform/agent/supervisor.py``) is its own isolated interpreter, started
without a preexec_fn (subprocess then uses vfork, so no Python runs between fork and exec in this
gRPC process); this module writes its spec, sends it control lines and applies its event lines.
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from haiplatform.agent import supervisor as _supervisor
from haiplatform.protos import agent_pb2

if TYPE_CHECKING:
    from haiplatform.agent.agent import AgentConfig

log = logging.getLogger("haiplatform.agent")

MAX_RANKS_PER_START = 1024


def supervisor_argv(spec_path: Path) -> list[str]:
    """The argv of a run's supervisor: its own interpreter (isolated, stdlib only), no preexec_fn."""
    return [sys.executable, "-I", "-S", _supervisor.__file__, str(spec_path)]


def cgroup_v2_parent() -> tuple[str, str]:
    """(directory under which run cgroups can be made, "") or ("", why not): this process's cgroup v2."""
    try:
        own = next(
            line[3:].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
    except (OSError, StopIteration):
        return "", "no cgroup v2 membership in /proc/self/cgroup"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError as exc:
        return "", f"cannot read /proc/self/mountinfo: {exc}"
    for line in lines:
        left, _, right = line.partition(" - ")
        if not right.startswith("cgroup2 "):
            continue
        parts = left.split()
        root, mountpoint = (p.encode().decode("unicode_escape") for p in parts[3:5])
        if own != root and not own.startswith(root.rstrip("/") + "/"):
            continue
        path = Path(mountpoint) / own[len(root.rstrip("/")) :].lstrip("/")
        probe = path / f"hai-probe-{os.getpid()}"
        try:
            probe.mkdir()
            probe.rmdir()
        except OSError as exc:
            return "", f"cgroup v2 at {path} is not writable: {exc.strerror}"
        return str(path), ""
    return "", "no cgroup v2 hierarchy mounted"


def check_start(start: agent_pb2.StartRun) -> str:
    """Why this agent refuses a StartRun (the field and the rule), or "" when it is well formed."""
    if not start.ranks:
        return "ranks: empty"
    if len(start.ranks) > MAX_RANKS_PER_START:
        return f"ranks: {len(start.ranks)} ranks, limit {MAX_RANKS_PER_START}"
    if not start.argv and not start.command.strip():
        return "command/argv: both empty"
    if start.argv and not start.argv[0]:
        return "argv[0]: empty"
    for i, arg in enumerate(start.argv):
        if "\0" in arg:
            return f"argv[{i}]: contains a NUL byte"
    if "\0" in start.command:
        return "command: contains a NUL byte"
    if not start.workdir.startswith("/"):
        return f"workdir: must be an absolute path, got {start.workdir!r}"
    for key, val in start.env.items():
        if not key or "=" in key or "\0" in key or "\0" in val:
            return f"env: {key!r} is not a valid variable"
    if not math.isfinite(start.term_s) or start.term_s < 0:
        return f"term_s: {start.term_s} is not a non-negative number of seconds"
    return ""


def wire_seconds(value: float, default: float) -> float:
    """A duration from the wire: ``default`` when unset, clamped to 0..3600 s, never NaN."""
    if not value or not math.isfinite(value):
        return default
    return min(max(value, 0.0), 3600.0)


@dataclass
class Rank:
    """One rank of a run as its supervisor reported it."""

    rank: int
    pid: int = 0
    exit_code: int | None = None
    reason: str = ""  # why it could not start
    fenced: bool = False  # stopped by its supervisor because the run's lease expired

    def poll(self) -> int | None:
        return self.exit_code


@dataclass
class Run:
    """The local ranks of one run of one job, its supervisor, and where its suspend/stop stands."""

    job_id: int
    run_seq: int
    ranks: dict[int, Rank] = field(default_factory=dict)
    suspend_requested: bool = False
    suspend_ready: bool = False
    grace_deadline: float = 0.0  # monotonic; stop the ranks at this time if still running
    term_s: float = 2.0
    stop_term_s: float | None = None  # the shortest stop sent so far
    supervisor: subprocess.Popen | None = None
    spec_path: Path | None = None
    cgroup: str = ""
    token: str = field(default_factory=lambda: secrets.token_hex(16))  # HAI_RUN_TOKEN of its ranks
    done: bool = False  # the supervisor reported that no process of the run is left
    _pending: bytearray = field(default_factory=bytearray)

    def running(self) -> bool:
        return any(r.exit_code is None for r in self.ranks.values())

    def send(self, line: str) -> None:
        """Queue one control line for the supervisor; never blocks (see flush)."""
        if self.supervisor is None or self.supervisor.stdin is None:
            return
        self._pending += line.replace("\n", " ").encode() + b"\n"
        self.flush()

    def flush(self) -> None:
        """Write what the supervisor's pipe takes now."""
        stdin = self.supervisor.stdin if self.supervisor is not None else None
        while self._pending and stdin is not None and not stdin.closed:
            try:
                n = os.write(stdin.fileno(), self._pending)
            except BlockingIOError:
                return
            except (BrokenPipeError, ValueError, OSError):
                self._pending.clear()
                return
            del self._pending[:n]

    def stop(self, term_s: float, why: str = "stopped") -> None:
        """SIGTERM every process of the run now and SIGKILL at ``term_s`` from now (idempotent)."""
        if self.stop_term_s is not None and self.stop_term_s <= term_s:
            return
        self.stop_term_s = term_s
        self.send(f"stop {term_s:.3f} {why}")

    def renew(self, deadline: float) -> None:
        """Extend the run's lease to ``deadline`` (CLOCK_MONOTONIC)."""
        self.send(f"lease {deadline:.6f}")


class RunStarter:
    """Starts runs in ``runs`` under new supervisors and applies their events (under ``lock``)."""

    def __init__(
        self,
        runs: dict[tuple[int, int], Run],
        lock: threading.RLock,
        config: AgentConfig,
        cgroup_parent: str,
        suspend_addr: str,
    ) -> None:
        self.runs = runs
        self.lock = lock
        self.config = config
        self.work_dir = Path(config.work_dir)
        self.cgroup_parent = cgroup_parent
        self.suspend_addr = suspend_addr

    def start(self, start: agent_pb2.StartRun, lease_deadline: float | None) -> None:
        """Start the run's local ranks under a new supervisor; a refused or failed start is an exit."""
        run = Run(start.job_id, start.run_seq, term_s=wire_seconds(start.term_s, 2.0))
        self.runs[(start.job_id, start.run_seq)] = run
        log_dir = self.log_dir(start.job_id)
        log_dir.mkdir(parents=True, exist_ok=True)
        refused = check_start(start)
        ranks = []
        for local_rank, rank in enumerate(start.ranks):
            run.ranks[rank] = Rank(rank)
            env = dict(os.environ)
            env.update(self.config.job_env)
            if self.config.fs3_mount and os.path.ismount(self.config.fs3_mount):
                env["FS3_MOUNT"] = self.config.fs3_mount
            env.update(start.env)
            env.update(
                RANK=str(rank), LOCAL_RANK=str(local_rank), HFREDUCE_LOCAL_RANK=str(local_rank),
                HAI_SUSPEND_ADDR=self.suspend_addr, HAI_NODE_NAME=self.config.node_name, HAI_USER=start.user,
                HAI_RUN_TOKEN=run.token,
            )  # fmt: skip
            path = log_dir / f"rank-{rank}.log"
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
            with open(path, "ab") as logf:
                logf.write(
                    f"=== job {start.job_id} run {start.run_seq} rank {rank} on {self.config.node_name} at {stamp} UTC ===\n".encode()
                )
                if refused:
                    logf.write(f"agent refused to start the run: {refused}\n".encode())
            argv = list(start.argv) or ["/bin/sh", "-c", start.command]
            ranks.append({"rank": rank, "argv": argv, "cwd": start.workdir, "env": env, "log": str(path)})
        what = shlex.join(start.argv) if start.argv else f"sh -c {shlex.quote(start.command)}"
        if refused:
            log.error("job %d run %d: refused to start: %s", start.job_id, start.run_seq, refused)
            self._fail_ranks(run, 126, f"agent refused to start the run: {refused}")
            return
        spec = {
            "job_id": start.job_id, "run_seq": start.run_seq, "ranks": ranks, "term_s": run.term_s,
            "lease_deadline": lease_deadline, "cgroup_parent": self.cgroup_parent,
        }  # fmt: skip
        run.spec_path = self.work_dir / "runs" / f"job-{start.job_id}-run-{start.run_seq}.json"
        try:
            fd = os.open(run.spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(spec, f)
            with open(log_dir / f"supervisor-run-{start.run_seq}.log", "ab") as errf:
                run.supervisor = subprocess.Popen(
                    supervisor_argv(run.spec_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                    stderr=errf, start_new_session=True, cwd="/",
                )  # fmt: skip
        except (OSError, ValueError) as exc:
            log.error("job %d run %d: cannot start its supervisor: %s", start.job_id, start.run_seq, exc)
            self._fail_ranks(run, 126, f"node agent cannot start the run's supervisor: {exc}")
            return
        os.set_blocking(run.supervisor.stdin.fileno(), False)
        threading.Thread(
            target=self._watch_supervisor,
            args=(run,),
            name=f"sup-{start.job_id}-{start.run_seq}",
            daemon=True,
        ).start()
        log.info("job %d run %d: started ranks %s (%s)", start.job_id, start.run_seq, list(start.ranks), what)

    @staticmethod
    def _fail_ranks(run: Run, code: int, reason: str) -> None:
        for r in run.ranks.values():
            if r.exit_code is None:
                r.exit_code, r.reason = code, reason
        run.done = True

    def _watch_supervisor(self, run: Run) -> None:
        """Read a supervisor's events until it exits; if it dies early, its ranks are failed and killed."""
        sup = run.supervisor
        assert sup is not None and sup.stdout is not None
        for raw in sup.stdout:
            with self.lock:
                try:
                    self._supervisor_event(run, json.loads(raw))
                except (ValueError, KeyError, TypeError, AttributeError):
                    log.warning("job %d run %d: bad supervisor line %r", run.job_id, run.run_seq, raw[:200])
        code = sup.wait()
        with self.lock:
            if sup.stdin is not None:
                try:
                    sup.stdin.close()
                except OSError:
                    pass
            if not run.done:
                log.error(
                    "job %d run %d: supervisor exited with %s before its run ended",
                    run.job_id,
                    run.run_seq,
                    code,
                )
                self._kill_leftovers(run)
                self._fail_ranks(run, -9, f"the run's supervisor exited with code {code}")

    @staticmethod
    def _supervisor_event(run: Run, ev: dict) -> None:
        """Apply one event line of a run's supervisor (caller holds the lock)."""
        kind, rank = ev["ev"], ev.get("rank")
        if kind == "started" and rank in run.ranks:
            run.ranks[rank].pid = int(ev["pid"])
        elif kind == "exit" and rank in run.ranks:
            r = run.ranks[rank]
            r.reason = str(ev.get("reason") or "")[:4000]
            r.fenced = bool(ev.get("fenced"))
            r.exit_code = int(ev["code"])
            if r.reason:
                log.warning("job %d rank %d: %s", run.job_id, r.rank, r.reason)
        elif kind == "cgroup":
            run.cgroup = str(ev.get("path", ""))
            log.info("job %d run %d: cgroup %s", run.job_id, run.run_seq, run.cgroup)
        elif kind == "stopping":
            log.info("job %d run %d: stopping (%s)", run.job_id, run.run_seq, ev.get("why"))
        elif kind == "done":
            run.done = True

    @staticmethod
    def _kill_leftovers(run: Run) -> None:
        """Best effort after a supervisor died: the cgroup's members and the ranks' process groups."""
        if run.cgroup:
            cg = _supervisor.Cgroup(Path(run.cgroup))
            cg.kill()
            cg.remove()
        for r in run.ranks.values():
            if r.pid and r.exit_code is None:
                try:
                    os.killpg(r.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass

    def log_dir(self, job_id: int) -> Path:
        """Where this node keeps the job's rank logs."""
        return self.work_dir / "logs" / f"job-{job_id}"
