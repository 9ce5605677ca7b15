"""Per-run supervisor: ``python -m haiplatform.agent.supervisor SPEC.json``, started by the node agent.

One supervisor per run per node. It is a child subreaper (PR_SET_CHILD_SUBREAPER), so every
descendant of the run's ranks, double-forked daemons included, stays in its process tree; where
the host has a writable cgroup v2 hierarchy the ranks also live in a cgroup of their own. Stopping
a run (SIGTERM, then SIGKILL after ``term_s``) therefore reaches every process of it, whether or
not a rank's leader has exited, and the run's last exit is reported only once none is left.

It holds the run's lease: the agent forwards each renewal the scheduler grants; when none arrives
before the deadline (agent hung, node partitioned, scheduler gone longer than the lease) the
supervisor stops the run on its own. The scheduler starts the job elsewhere only after the lease
plus the kill grace, so two runs of one job never overlap. When the agent dies (its pipe closes),
the run is stopped too.

Protocol, one line per message. stdin (agent -> supervisor): ``lease DEADLINE`` (CLOCK_MONOTONIC
seconds), ``stop TERM_S WHY``, ``kill WHY``. stdout (supervisor -> agent): JSON objects with
``ev`` = ``cgroup`` (path), ``started`` (rank, pid), ``exit`` (rank, code, reason), ``stopping``
(why), ``done``. This process is single-threaded, so running Python between fork and exec here
(``preexec_fn``) is safe, unlike in the gRPC agent.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass
class RankProc:
    """One rank's leader process (or the reason it never started)."""

    rank: int
    argv: list[str]
    cwd: str
    env: dict[str, str]
    log: str
    pid: int = 0
    exit_code: int | None = None
    reason: str = ""
    reported: bool = False
    fenced: bool = False  # ended after the run was stopped for an expired lease


@dataclass
class RunSpec:
    """What the agent asks this supervisor to run (the JSON file named on the command line)."""

    job_id: int
    run_seq: int
    ranks: list[RankProc]
    term_s: float = 2.0
    lease_deadline: float = math.inf  # CLOCK_MONOTONIC; inf = no lease
    cgroup_parent: str = ""  # cgroup v2 directory to create the run's cgroup under; "" = none

    @classmethod
    def load(cls, path: Path) -> RunSpec:
        """Read and check the spec the agent wrote; raises ValueError naming the bad field."""
        d = json.loads(path.read_text())
        ranks = []
        for i, r in enumerate(d["ranks"]):
            argv = r["argv"]
            if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
                raise ValueError(f"ranks[{i}].argv: must be a non-empty list of strings")
            ranks.append(RankProc(int(r["rank"]), argv, str(r["cwd"]), dict(r["env"]), str(r["log"])))
        lease = d.get("lease_deadline")
        return cls(
            job_id=int(d["job_id"]), run_seq=int(d["run_seq"]), ranks=ranks, term_s=float(d["term_s"]),
            lease_deadline=math.inf if lease is None else float(lease),
            cgroup_parent=str(d.get("cgroup_parent") or ""),
        )  # fmt: skip


def start_failure(exc: OSError, rank: RankProc) -> tuple[int, str]:
    """Exit code (shell convention: 127 not found, 126 otherwise) and cause, cause first, of a failed start."""
    if exc.filename == rank.cwd:
        what = {
            errno.ENOENT: "does not exist",
            errno.ENOTDIR: "is not a directory",
            errno.EACCES: "is not accessible (permission denied)",
        }.get(exc.errno or 0, exc.strerror or str(exc))
        return 127, f"cannot start: workdir {what}: {rank.cwd}"
    exe = rank.argv[0]
    if exc.errno == errno.ENOENT:
        return 127, f"cannot start: executable not found: {exe}"
    if exc.errno == errno.EACCES:
        return 126, f"cannot start: permission denied executing {exe}"
    return 126, f"cannot start: exec failed ({exc.strerror or exc}): {exe}"


def shell_start_failure(log: str) -> str:
    """For a shell rank that exited 126/127: the shell's own complaint (last line of the log) as a cause."""
    try:
        with open(log, "rb") as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 4096))
            last = f.read().decode(errors="replace").strip().splitlines()[-1:]
    except OSError:
        return ""
    # dash: "/bin/sh: 1: NAME: not found"; bash: "/bin/sh: line 1: NAME: command not found"
    parts = last[0].split(": ") if last and last[0].startswith(("/bin/sh:", "sh:")) else []
    if len(parts) >= 4 and parts[-1].endswith("not found"):
        return f"cannot start: executable not found: {': '.join(parts[2:-1])[:300]} (sh)"
    if len(parts) >= 4 and parts[-1] == "Permission denied":
        return f"cannot start: permission denied executing {': '.join(parts[2:-1])[:300]} (sh)"
    return ""


def descendants(root: int) -> list[int]:
    """Live (non-zombie) processes below ``root``, from /proc (ppid links)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) < 2 or fields[0] in (b"Z", b"X"):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            out.append(pid)
            todo.append(pid)
    return out


class Cgroup:
    """The run's cgroup v2 directory: ranks join it before exec; ``kill`` ends every member."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, parent: str, name: str) -> Cgroup:
        """Make ``parent/name``; raises OSError when the hierarchy is not writable."""
        path = Path(parent) / name
        path.mkdir()
        return cls(path)

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (cgroup.kill where the kernel has it, else one by one)."""
        try:
            (self.path / "cgroup.kill").write_text("1")
            return
        except OSError:
            pass
        for pid in self.pids():
            _signal(pid, signal.SIGKILL)

    def remove(self) -> None:
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.02)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


@dataclass
class Supervisor:
    """Runs the ranks of one run and guarantees none of their processes outlives it."""

    spec: RunSpec
    out_fd: int = 1
    in_fd: int = 0
    cgroup: Cgroup | None = None
    kill_at: float = 0.0  # CLOCK_MONOTONIC; 0 = not stopping
    stop_why: str = ""
    _out_buf: bytearray = field(default_factory=bytearray)
    _in_buf: bytearray = field(default_factory=bytearray)
    _agent_gone: bool = False
    _sigterm: bool = False

    # -- output to the agent (never blocks: a stopped agent must not stop the lease check) ------
    def emit(self, **msg: Any) -> None:
        self._out_buf += json.dumps(msg).encode() + b"\n"
        self._flush()

    def _flush(self) -> None:
        while self._out_buf and not self._agent_gone:
            try:
                n = os.write(self.out_fd, self._out_buf)
            except BlockingIOError:
                return
            except BrokenPipeError:
                self._agent_gone = True
                return
            del self._out_buf[:n]

    def note(self, text: str) -> None:
        """Write a line into every rank's log (what users read) and to stderr."""
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
        line = f"=== {stamp} UTC haiplatform: {text} ===\n"
        sys.stderr.write(line)
        for r in self.spec.ranks:
            try:
                with open(r.log, "a") as f:
                    f.write(line)
            except OSError:
                pass

    # -- starting --------------------------------------------------------------------------
    def _preexec(self) -> None:
        # In the forked child of this single-threaded process: die with the supervisor, join the
        # run's cgroup, and give up if the supervisor is already gone.
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if self.cgroup is not None:
            try:
                with open(self.cgroup.path / "cgroup.procs", "w") as f:
                    f.write("0")
            except OSError:
                pass  # still tracked as a descendant of this subreaper
        if os.getppid() != self._pid:
            os._exit(137)

    def start(self) -> None:
        """Become a subreaper, make the cgroup, start every rank; failed starts are reported exits."""
        self._pid = os.getpid()
        if _libc.prctl(_PR_SET_CHILD_SUBREAPER, 1) != 0:
            self.note(f"PR_SET_CHILD_SUBREAPER failed (errno {ctypes.get_errno()})")
        if self.spec.cgroup_parent:
            name = f"hai-job{self.spec.job_id}-run{self.spec.run_seq}-{self._pid}"
            try:
                self.cgroup = Cgroup.create(self.spec.cgroup_parent, name)
                self.emit(ev="cgroup", path=str(self.cgroup.path))
            except OSError as exc:
                sys.stderr.write(f"no cgroup under {self.spec.cgroup_parent}: {exc}; subreaper only\n")
        for r in self.spec.ranks:
            try:
                with open(r.log, "ab") as logf:
                    popen = subprocess.Popen(
                        r.argv, cwd=r.cwd, env=r.env, stdin=subprocess.DEVNULL, stdout=logf,
                        stderr=subprocess.STDOUT, process_group=0, preexec_fn=self._preexec,
                    )  # fmt: skip
            except OSError as exc:
                r.exit_code, r.reason = start_failure(exc, r)
                self._log_to(r, f"rank {r.rank}: {r.reason}\n")
                continue
            except (ValueError, subprocess.SubprocessError) as exc:
                r.exit_code, r.reason = 126, f"cannot start: exec failed ({exc}): {r.argv[0]}"
                self._log_to(r, f"rank {r.rank}: {r.reason}\n")
                continue
            popen.returncode = 0  # this process reaps with waitpid(-1); keep Popen from trying
            r.pid = popen.pid
            self.emit(ev="started", rank=r.rank, pid=r.pid)

    @staticmethod
    def _log_to(r: RankProc, text: str) -> None:
        try:
            with open(r.log, "a") as f:
                f.write(text)
        except OSError:
            pass

    # -- stopping --------------------------------------------------------------------------
    def members(self) -> set[int]:
        """Every live process of the run: the subreaper's descendants and the cgroup's members."""
        pids = set(descendants(self._pid))
        if self.cgroup is not None:
            pids.update(self.cgroup.pids())
        pids.discard(self._pid)
        return pids

    def stop(self, term_s: float, why: str) -> None:
        """SIGTERM every process of the run now, SIGKILL whatever is left ``term_s`` from now."""
        at = time.monotonic() + max(0.0, term_s)
        if self.kill_at and self.kill_at <= at:
            return
        if not self.kill_at:
            self.stop_why = why
            self.emit(ev="stopping", why=why)
        self.kill_at = at
        if term_s > 0:
            for r in self.spec.ranks:
                if r.pid and r.exit_code is None:
                    try:
                        os.killpg(r.pid, signal.SIGTERM)
                    except (ProcessLookupError, PermissionError):
                        pass
            for pid in self.members():
                _signal(pid, signal.SIGTERM)

    def _sigkill_all(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
        for pid in self.members():
            _signal(pid, signal.SIGKILL)

    # -- main loop -------------------------------------------------------------------------
    def _reap(self) -> None:
        by_pid = {r.pid: r for r in self.spec.ranks if r.pid}
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            r = by_pid.get(pid)
            if r is not None and r.exit_code is None:
                r.exit_code = os.waitstatus_to_exitcode(status)
                r.fenced = bool(self.kill_at) and self.stop_why == "lease expired"
                if r.exit_code in (126, 127) and r.argv[:2] == ["/bin/sh", "-c"]:
                    r.reason = shell_start_failure(r.log)

    def _read_commands(self, now: float) -> None:
        try:
            data = os.read(self.in_fd, 65536)
        except BlockingIOError:
            return
        if not data:
            self._agent_gone = True
            if not self.kill_at:
                self.note(f"node agent gone; stopping the run (SIGKILL after {self.spec.term_s:g} s)")
            self.stop(self.spec.term_s, "node agent gone")
            return
        self._in_buf += data
        del self._in_buf[: max(0, len(self._in_buf) - (1 << 20))]  # a flood cannot grow memory
        while b"\n" in self._in_buf:
            line, _, rest = bytes(self._in_buf).partition(b"\n")
            self._in_buf[:] = rest
            self.command(line.decode(errors="replace"), now)

    def command(self, line: str, now: float) -> None:
        """Apply one control line; malformed lines are logged and ignored."""
        op, _, rest = line.strip().partition(" ")
        try:
            if op == "lease":
                deadline = float(rest)
                if math.isnan(deadline):
                    raise ValueError("nan")
                self.spec.lease_deadline = deadline
            elif op == "stop":
                term, _, why = rest.partition(" ")
                self.stop(min(max(float(term), 0.0), 3600.0), why or "stopped by the agent")
            elif op == "kill":
                self.stop(0.0, rest or "killed by the agent")
            else:
                raise ValueError(f"unknown command {op!r}")
        except ValueError as exc:
            sys.stderr.write(f"refused control line {line[:200]!r}: {exc}\n")

    def _emit_exits(self, final: bool) -> None:
        """Report exits; the run's last one only once no process of it is left (``final``)."""
        alive = [r for r in self.spec.ranks if r.exit_code is None]
        for r in self.spec.ranks:
            if r.exit_code is not None and not r.reported and (alive or final):
                r.reported = True
                self.emit(ev="exit", rank=r.rank, code=r.exit_code, reason=r.reason, fenced=r.fenced)

    def run(self) -> int:
        """Supervise until every rank exited and no process of the run is left; returns 0."""
        os.set_blocking(self.in_fd, False)
        os.set_blocking(self.out_fd, False)
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "_sigterm", True))
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        sel = selectors.DefaultSelector()
        sel.register(self.in_fd, selectors.EVENT_READ, "in")
        sel.register(wake_r, selectors.EVENT_READ, "wake")
        self.start()
        while True:
            now = time.monotonic()
            self._reap()
            if self._sigterm:
                self._sigterm = False
                self.stop(self.spec.term_s, "supervisor got SIGTERM")
            leaders_done = all(r.exit_code is not None for r in self.spec.ranks)
            if not self.kill_at and now >= self.spec.lease_deadline:
                self.note(
                    f"lease expired (no renewal from the scheduler): stopping the run, "
                    f"SIGKILL after {self.spec.term_s:g} s"
                )
                self.stop(self.spec.term_s, "lease expired")
            if leaders_done:
                left = self.members()
                if not left:
                    break
                if not self.kill_at:
                    self.stop(self.spec.term_s, "every rank exited; stopping what they left behind")
            self._emit_exits(final=False)
            if self.kill_at and now >= self.kill_at:
                self._sigkill_all()
            timeout = 1.0
            if self.kill_at:
                timeout = 0.02 if now >= self.kill_at else min(timeout, self.kill_at - now)
            elif leaders_done:
                timeout = 0.02
            if self.spec.lease_deadline > now:
                timeout = min(timeout, self.spec.lease_deadline - now)
            if self._out_buf and not self._agent_gone:
                try:
                    sel.register(self.out_fd, selectors.EVENT_WRITE, "out")
                except KeyError:
                    pass
            for key, _ in sel.select(max(timeout, 0.0)):
                if key.data == "in":
                    self._read_commands(time.monotonic())
                    if self._agent_gone:
                        sel.unregister(self.in_fd)
                elif key.data == "wake":
                    try:
                        while os.read(wake_r, 512):
                            pass
                    except BlockingIOError:
                        pass
                elif key.data == "out":
                    sel.unregister(self.out_fd)
                    self._flush()
        self._emit_exits(final=True)
        if self.cgroup is not None:
            self.cgroup.remove()
        self.emit(ev="done")
        deadline = time.monotonic() + 5.0  # give a slow agent the last lines
        while self._out_buf and not self._agent_gone and time.monotonic() < deadline:
            time.sleep(0.01)
            self._flush()
        return 0


def main(argv: list[str] | None = None) -> int:
    """Load the spec named by argv[0], supervise the run, exit when nothing of it is left."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.stderr.write("usage: python -m haiplatform.agent.supervisor SPEC.json\n")
        return 2
    try:
        spec = RunSpec.load(Path(args[0]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        sys.stderr.write(f"bad run spec {args[0]}: {exc!r}\n")
        return 2
    Path(args[0]).unlink(missing_ok=True)  # it holds the job's environment: keep it no longer than needed
    return Supervisor(spec).run()


if __name__ == "__main__":
    sys.exit(main())
