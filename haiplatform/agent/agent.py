"""The node agent: heartbeats to the scheduler, runs each job run under a supervisor, delivers suspends.

One agent per node. Each run's local ranks are started by a per-run supervisor process
(``haiplatform/agent/supervisor.py``): a child subreaper in its own session, with a cgroup v2 per
run where the host has a writable hierarchy, that holds the run's lease and kills every process of
the run (double-forked ones too) when it is stopped, its lease expires, or this agent dies. A rank
is its argv exec'd directly, or ``/bin/sh -c COMMAND`` for shell jobs, with stdout and stderr in
``WORK_DIR/logs/job-ID/rank-R.log``. The in-job client (``haiplatform.job``) talks to the agent
over a pyzmq ROUTER socket whose address is in the rank's ``HAI_SUSPEND_ADDR``; every message is
validated, and malformed ones are logged and answered with an error.
"""

from __future__ import annotations

import hmac
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
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import zmq

from ffcommon.metrics import GrpcMetricsInterceptor
from ffcommon.ports import free_port
from haiplatform.agent import supervisor as _supervisor
from haiplatform.protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger("haiplatform.agent")

# Limits on what the in-job client may send (one small JSON object) and on log reads.
MAX_CLIENT_MESSAGE_BYTES = 4096
MAX_ZMQ_FRAME_BYTES = 65536  # libzmq drops a peer that sends a larger message
MAX_LOG_READ_BYTES = 4_000_000  # under gRPC's default 4 MiB message limit
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


def parse_client_request(body: bytes) -> tuple[str, int, int, int, str]:
    """(op, job, seq, rank, token) of one in-job client message; ValueError names the bad field and limit."""
    if len(body) > MAX_CLIENT_MESSAGE_BYTES:
        raise ValueError(f"message: {len(body)} bytes, limit {MAX_CLIENT_MESSAGE_BYTES}")
    try:
        msg = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"message: not UTF-8 JSON ({exc})") from None
    except RecursionError:
        raise ValueError("message: JSON nested too deeply") from None
    if not isinstance(msg, dict):
        raise ValueError(f"message: must be a JSON object, got {type(msg).__name__}")
    extra = sorted(set(msg) - {"op", "job", "seq", "rank", "token"})
    if extra:
        raise ValueError(f"{extra[0]}: unknown field")
    op = msg.get("op")
    if op not in ("poll", "ready"):
        raise ValueError(f"op: must be 'poll' or 'ready', got {op!r:.40}")
    out = []
    for key, lo, hi in (("job", 1, 2**63 - 1), ("seq", 1, 2**32 - 1), ("rank", 0, 2**32 - 1)):
        val = msg.get(key)
        if isinstance(val, bool) or not isinstance(val, int):
            raise ValueError(f"{key}: must be an integer, got {type(val).__name__}")
        if not lo <= val <= hi:
            raise ValueError(f"{key}: {val} is outside {lo}..{hi}")
        out.append(val)
    token = msg.get("token", "")
    if not isinstance(token, str) or len(token) > 128:
        raise ValueError("token: must be a string of at most 128 characters")
    return op, out[0], out[1], out[2], token


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


@dataclass
class AgentConfig:
    """How to reach the scheduler and what this node is."""

    scheduler: str
    node_name: str
    work_dir: Path
    token: str
    slots: int = 8
    host: str = "127.0.0.1"
    health_check: str = ""  # shell command; empty = the built-in validator
    health_interval_s: float = 60.0
    tls_ca: bytes | None = None
    cgroup: str = "auto"  # "auto": a cgroup v2 per run where writable; "off"; or a cgroup v2 directory
    job_env: dict[str, str] = field(default_factory=dict)  # ranks' defaults (FS3_MGMTD); a job's env wins
    fs3_mount: str = ""  # this node's fs3 mount: ranks get FS3_MOUNT while it is mounted


class Agent:
    """A node agent; ``run()`` blocks until ``stop()``."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.work_dir = Path(config.work_dir)
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        (self.work_dir / "runs").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.runs: dict[tuple[int, int], Run] = {}
        self.started_at = time.time()
        self.heartbeat_s = 1.0
        self.healthy, self.health_reason = True, ""
        self.refused_messages = 0
        self._stop = threading.Event()
        if config.cgroup == "off":
            self.cgroup_parent, why = "", "disabled (--cgroup off)"
        elif config.cgroup == "auto":
            self.cgroup_parent, why = cgroup_v2_parent()
        else:
            self.cgroup_parent, why = config.cgroup, ""
        log.info(
            "runs tracked by a subreaper supervisor%s",
            f" and a cgroup v2 under {self.cgroup_parent}" if self.cgroup_parent else f"; no cgroup: {why}",
        )
        self._zmq = zmq.Context()
        self._router = self._zmq.socket(zmq.ROUTER)
        self._router.linger = 0
        self._router.setsockopt(zmq.MAXMSGSIZE, MAX_ZMQ_FRAME_BYTES)
        port = self._router.bind_to_random_port(f"tcp://{config.host}")
        self.suspend_addr = f"tcp://{config.host}:{port}"
        self._log_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4), interceptors=[GrpcMetricsInterceptor()]
        )
        agent_pb2_grpc.add_AgentLogsServicer_to_server(_LogService(self), self._log_server)
        log_port = self._log_server.add_insecure_port(f"{config.host}:0")
        self.log_address = f"{config.host}:{log_port}"
        if config.tls_ca is not None:
            channel = grpc.secure_channel(config.scheduler, grpc.ssl_channel_credentials(config.tls_ca))
        else:
            channel = grpc.insecure_channel(config.scheduler)
        self._control = agent_pb2_grpc.AgentControlStub(channel)
        self._metadata = (("authorization", f"Bearer {config.token}"),)

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Serve logs and suspend requests, heartbeat until stopped; kill all ranks on the way out."""
        self._log_server.start()
        threads = [
            threading.Thread(target=self._serve_zmq, name="zmq", daemon=True),
            threading.Thread(target=self._health_loop, name="health", daemon=True),
        ]
        for t in threads:
            t.start()
        log.info(
            "agent %s: logs on %s, suspend on %s", self.config.node_name, self.log_address, self.suspend_addr
        )
        failures = 0
        try:
            while not self._stop.is_set():
                self._enforce_deadlines()
                sent_at = time.monotonic()  # a lease runs from before the scheduler granted it
                try:
                    reply = self._control.Heartbeat(
                        self._heartbeat_request(), metadata=self._metadata, timeout=5
                    )
                except grpc.RpcError as exc:
                    failures += 1
                    if failures == 1 or failures % 50 == 0:
                        log.warning(
                            "heartbeat to %s failed (%s); retrying", self.config.scheduler, exc.code().name
                        )
                    if exc.code() in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                        log.error("scheduler refused this agent: %s", exc.details())
                else:
                    failures = 0
                    try:
                        self._apply(reply, sent_at)
                    except Exception:  # one bad reply must not end the heartbeat loop
                        log.exception("cannot apply the scheduler's reply")
                self._stop.wait(self.heartbeat_s)
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask ``run()`` to return."""
        self._stop.set()

    def shutdown(self) -> None:
        """Kill every run (each supervisor SIGKILLs all its processes) and close the sockets."""
        with self.lock:
            for run in self.runs.values():
                run.send("kill agent shutting down")
        self._log_server.stop(0)
        self._stop.set()

    # -- heartbeat ----------------------------------------------------------------------------
    def _heartbeat_request(self) -> agent_pb2.HeartbeatRequest:
        req = agent_pb2.HeartbeatRequest(
            node=self.config.node_name, slots=self.config.slots, log_address=self.log_address,
            host=self.config.host, spare_ports=[free_port(self.config.host) for _ in range(4)],
            healthy=self.healthy, health_reason=self.health_reason, agent_started_at=self.started_at,
        )  # fmt: skip
        with self.lock:
            for run in self.runs.values():
                for r in run.ranks.values():
                    code = r.exit_code
                    req.ranks.add(
                        job_id=run.job_id, run_seq=run.run_seq, rank=r.rank, running=code is None,
                        exit_code=code or 0, suspend_ready=run.suspend_ready, reason=r.reason, fenced=r.fenced,
                    )  # fmt: skip
        return req

    def _apply(self, reply: agent_pb2.HeartbeatReply, sent_at: float) -> None:
        if math.isfinite(reply.heartbeat_s) and 0.01 <= reply.heartbeat_s <= 3600:
            self.heartbeat_s = reply.heartbeat_s
        lease = reply.lease_s if math.isfinite(reply.lease_s) and reply.lease_s > 0 else 0.0
        deadline = sent_at + lease if lease else None
        with self.lock:
            for start in reply.start:
                if (start.job_id, start.run_seq) not in self.runs:
                    self._start(start, deadline)
            if deadline is not None:
                for ref in reply.renew:
                    run = self.runs.get((ref.job_id, ref.run_seq))
                    if run is not None:
                        run.renew(deadline)
            now = time.monotonic()
            for sus in reply.suspend:
                run = self.runs.get((sus.job_id, sus.run_seq))
                if run is not None and not run.suspend_requested:
                    run.suspend_requested = True
                    run.grace_deadline = now + _seconds(sus.grace_s, 5.0)
                    run.term_s = _seconds(sus.term_s, 2.0)
                    log.info(
                        "job %d run %d: suspend requested (grace %.1f s)",
                        sus.job_id,
                        sus.run_seq,
                        sus.grace_s,
                    )
            for kill in reply.kill:
                run = self.runs.get((kill.job_id, kill.run_seq))
                if run is not None:
                    run.stop(_seconds(kill.term_s, 2.0), kill.reason or "killed by the scheduler")
            for fg in reply.forget:
                run = self.runs.get((fg.job_id, fg.run_seq))
                if run is None:
                    continue
                for rank in [k for k, r in run.ranks.items() if r.exit_code is not None]:
                    del run.ranks[rank]
                if not run.ranks:
                    del self.runs[(fg.job_id, fg.run_seq)]
                    if run.spec_path is not None:
                        run.spec_path.unlink(missing_ok=True)

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        with self.lock:
            for run in self.runs.values():
                run.flush()
                if not run.running():
                    continue
                if run.suspend_requested and run.stop_term_s is None and now >= run.grace_deadline:
                    log.warning("job %d: did not suspend within the grace period; stopping it", run.job_id)
                    run.stop(run.term_s, "did not suspend within the grace period")

    def _start(self, start: agent_pb2.StartRun, lease_deadline: float | None) -> None:
        """Start the run's local ranks under a new supervisor; a refused or failed start is an exit."""
        run = Run(start.job_id, start.run_seq, term_s=_seconds(start.term_s, 2.0))
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

    # -- in-job client ------------------------------------------------------------------------
    def _serve_zmq(self) -> None:
        """Answer in-job clients; a malformed message is logged and refused, never fatal."""
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                if not poller.poll(200):
                    continue
                frames = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            except zmq.ZMQError as exc:
                log.warning("zmq receive failed: %s", exc)
                continue
            try:
                # A REQ client sends [identity, b"", body] through this ROUTER.
                if len(frames) != 3 or frames[1] != b"":
                    self._refuse(f"envelope: {len(frames)} frames, expected a REQ message")
                    continue
                try:
                    answer = self._client_request(*parse_client_request(frames[2]))
                except ValueError as exc:
                    self._refuse(str(exc))
                    answer = {"error": str(exc)}
                self._router.send_multipart([frames[0], b"", json.dumps(answer).encode()], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.warning("zmq reply failed: %s", exc)
            except Exception:  # keep serving whatever one request did
                log.exception("in-job client request failed")
        self._router.close()

    def _refuse(self, why: str) -> None:
        self.refused_messages += 1
        if self.refused_messages <= 20 or self.refused_messages % 1000 == 0:
            log.warning("refused in-job client message (%d so far): %s", self.refused_messages, why)

    def _client_request(self, op: str, job: int, seq: int, rank: int, token: str) -> dict:
        with self.lock:
            run = self.runs.get((job, seq))
            if run is None:
                return {"error": f"job {job} run {seq} is not running on {self.config.node_name}"}
            if not hmac.compare_digest(token.encode(), run.token.encode()):
                raise ValueError(f"token: not the HAI_RUN_TOKEN of job {job} run {seq}")
            if rank not in run.ranks:
                raise ValueError(f"rank: job {job} run {seq} has no rank {rank} on {self.config.node_name}")
            if op == "poll":
                # Only rank 0 sees the command (HAI-Platform: "seen only by rank 0").
                return {"suspend": run.suspend_requested and rank == 0}
            log.info("job %d run %d: rank %d called go_suspend()", job, seq, rank)
            run.suspend_ready = True
            run.stop(run.term_s, "the job called go_suspend()")
            return {"ok": True}

    # -- health -------------------------------------------------------------------------------
    def _health_loop(self) -> None:
        while not self._stop.is_set():
            ok, reason = self.check_health()
            if ok != self.healthy:
                log.warning("node %s health: %s", self.config.node_name, "ok" if ok else reason)
            self.healthy, self.health_reason = ok, reason
            self._stop.wait(self.config.health_interval_s)

    def check_health(self) -> tuple[bool, str]:
        """Run the validator: the configured command, or the built-in checks (disk, memory, GEMM)."""
        if self.config.health_check:
            try:
                out = subprocess.run(
                    ["/bin/sh", "-c", self.config.health_check], capture_output=True, text=True, timeout=60
                )
            except subprocess.TimeoutExpired:
                return False, "health check timed out after 60 s"
            if out.returncode != 0:
                msg = (out.stdout + out.stderr).strip().splitlines()
                return False, f"health check exited {out.returncode}: {msg[-1] if msg else ''}"
            return True, ""
        return builtin_validator(self.work_dir)


def _seconds(value: float, default: float) -> float:
    """A duration from the wire: ``default`` when unset, clamped to 0..3600 s, never NaN."""
    if not value or not math.isfinite(value):
        return default
    return min(max(value, 0.0), 3600.0)


def builtin_validator(work_dir: Path) -> tuple[bool, str]:
    """Small version of the Fire-Flyer validator: work dir writable, memory available, GEMM correct."""
    import numpy as np

    try:
        probe = work_dir / ".health-probe"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        return False, f"work dir {work_dir} not writable: {exc}"
    try:
        avail_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemAvailable")
        )
        if avail_kib < 256 * 1024:
            return False, f"only {avail_kib // 1024} MiB of memory available"
    except (OSError, StopIteration):
        pass
    a = np.arange(64 * 64, dtype=np.float64).reshape(64, 64) % 7
    if not np.array_equal(a @ np.eye(64), a):
        return False, "GEMM result wrong (CPU logic fault)"
    return True, ""


class _LogService(agent_pb2_grpc.AgentLogsServicer):
    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def ReadLog(self, request, context):  # noqa: ANN001
        if request.max_bytes > MAX_LOG_READ_BYTES:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"max_bytes: {request.max_bytes} is over the limit of {MAX_LOG_READ_BYTES}",
            )
        path = self.agent.log_dir(request.job_id) / f"rank-{request.rank}.log"
        try:
            with open(path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                offset = request.offset if request.offset >= 0 else max(0, size + request.offset)
                f.seek(min(offset, size))
                data = f.read(request.max_bytes or 65536)
        except FileNotFoundError:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"job {request.job_id} rank {request.rank}: no log on {self.agent.config.node_name}",
            )
        return agent_pb2.ReadLogReply(data=data, next_offset=min(offset, size) + len(data))
