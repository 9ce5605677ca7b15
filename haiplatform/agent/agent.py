"""The node agent: heartbeats to the scheduler, runs job ranks as process groups, delivers suspends.

One agent per node. Each rank is ``/bin/sh -c COMMAND`` in its own session (process group), with
stdout and stderr in ``WORK_DIR/logs/job-ID/rank-R.log``; it dies with the agent (PR_SET_PDEATHSIG),
so a killed agent never leaves ranks behind. The in-job client (``haiplatform.job``) talks to
the agent over a pyzmq REP socket whose address is in the rank's ``HAI_SUSPEND_ADDR``.
"""

from __future__ import annotations

import json
import logging
import os
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

from fireflyer.launcher import free_port
from fireflyer.metrics import GrpcMetricsInterceptor
from haiplatform.protos import agent_pb2, agent_pb2_grpc

log = logging.getLogger("haiplatform.agent")

_PR_SET_PDEATHSIG = 1


# Run by a fresh interpreter that then becomes the rank's shell (exec: same pid, same session):
# ask for SIGKILL when the agent dies, and give up if it already has. Not a preexec_fn: Python code
# between fork and exec in a process with gRPC threads can crash the child (gRPC's fork handlers
# and the fds close_fds closes under them; seen as "epoll_wait: Bad file descriptor" and SIGABRT),
# and without one, subprocess uses vfork, which runs no fork handlers at all.
_EXEC_WITH_PDEATHSIG = (
    "import ctypes, os, signal, sys\n"
    f"ctypes.CDLL(None, use_errno=True).prctl({_PR_SET_PDEATHSIG}, signal.SIGKILL)\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(137)\n"
    "os.execv('/bin/sh', ['/bin/sh', '-c', sys.argv[2]])\n"
)


def rank_argv(command: str) -> list[str]:
    """The argv that runs ``command`` as a rank: ``/bin/sh -c command`` that dies with this process."""
    return [sys.executable, "-S", "-c", _EXEC_WITH_PDEATHSIG, str(os.getpid()), command]


@dataclass
class Rank:
    """One rank process (or its recorded exit when it could not start)."""

    rank: int
    popen: subprocess.Popen | None
    exit_code: int | None = None

    def poll(self) -> int | None:
        if self.exit_code is None and self.popen is not None:
            self.exit_code = self.popen.poll()
        return self.exit_code

    def signal(self, sig: int) -> None:
        if self.popen is not None and self.poll() is None:
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass


@dataclass
class Run:
    """The local ranks of one run of one job, and where its suspend/kill stands."""

    job_id: int
    run_seq: int
    ranks: dict[int, Rank] = field(default_factory=dict)
    suspend_requested: bool = False
    suspend_ready: bool = False
    grace_deadline: float = 0.0  # monotonic; stop the ranks at this time if still running
    term_s: float = 2.0
    sigkill_at: float = 0.0  # monotonic; 0 = not being stopped

    def running(self) -> bool:
        return any(r.poll() is None for r in self.ranks.values())

    def stop(self, term_s: float) -> None:
        """SIGTERM every rank now and SIGKILL at ``term_s`` from now (idempotent)."""
        if self.sigkill_at:
            return
        for r in self.ranks.values():
            r.signal(signal.SIGTERM)
        self.sigkill_at = time.monotonic() + term_s


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


class Agent:
    """A node agent; ``run()`` blocks until ``stop()``."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.work_dir = Path(config.work_dir)
        (self.work_dir / "logs").mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.runs: dict[tuple[int, int], Run] = {}
        self.started_at = time.time()
        self.heartbeat_s = 1.0
        self.healthy, self.health_reason = True, ""
        self._stop = threading.Event()
        self._zmq = zmq.Context()
        self._rep = self._zmq.socket(zmq.REP)
        self._rep.linger = 0
        port = self._rep.bind_to_random_port(f"tcp://{config.host}")
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
                    self.heartbeat_s = reply.heartbeat_s or self.heartbeat_s
                    self._apply(reply)
                self._stop.wait(self.heartbeat_s)
        finally:
            self.shutdown()

    def stop(self) -> None:
        """Ask ``run()`` to return."""
        self._stop.set()

    def shutdown(self) -> None:
        """Kill every rank and close the sockets."""
        with self.lock:
            for run in self.runs.values():
                for r in run.ranks.values():
                    r.signal(signal.SIGKILL)
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
                    code = r.poll()
                    req.ranks.add(
                        job_id=run.job_id, run_seq=run.run_seq, rank=r.rank, running=code is None,
                        exit_code=code or 0, suspend_ready=run.suspend_ready,
                    )  # fmt: skip
        return req

    def _apply(self, reply: agent_pb2.HeartbeatReply) -> None:
        with self.lock:
            for start in reply.start:
                if (start.job_id, start.run_seq) not in self.runs:
                    self._start(start)
            now = time.monotonic()
            for sus in reply.suspend:
                run = self.runs.get((sus.job_id, sus.run_seq))
                if run is not None and not run.suspend_requested:
                    run.suspend_requested = True
                    run.grace_deadline = now + (sus.grace_s or 5.0)
                    run.term_s = sus.term_s or 2.0
                    log.info(
                        "job %d run %d: suspend requested (grace %.1f s)",
                        sus.job_id,
                        sus.run_seq,
                        sus.grace_s,
                    )
            for kill in reply.kill:
                run = self.runs.get((kill.job_id, kill.run_seq))
                if run is not None:
                    run.stop(kill.term_s or 2.0)
            for fg in reply.forget:
                run = self.runs.get((fg.job_id, fg.run_seq))
                if run is None:
                    continue
                for rank in [k for k, r in run.ranks.items() if r.poll() is not None]:
                    del run.ranks[rank]
                if not run.ranks:
                    del self.runs[(fg.job_id, fg.run_seq)]

    def _enforce_deadlines(self) -> None:
        now = time.monotonic()
        with self.lock:
            for run in self.runs.values():
                if not run.running():
                    continue
                if run.suspend_requested and not run.sigkill_at and now >= run.grace_deadline:
                    log.warning("job %d: did not suspend within the grace period; stopping it", run.job_id)
                    run.stop(run.term_s)
                if run.sigkill_at and now >= run.sigkill_at:
                    for r in run.ranks.values():
                        r.signal(signal.SIGKILL)

    def _start(self, start: agent_pb2.StartRun) -> None:
        run = Run(start.job_id, start.run_seq)
        self.runs[(start.job_id, start.run_seq)] = run
        log_dir = self.log_dir(start.job_id)
        log_dir.mkdir(parents=True, exist_ok=True)
        for local_rank, rank in enumerate(start.ranks):
            env = dict(os.environ)
            env.update(start.env)
            env.update(
                RANK=str(rank), LOCAL_RANK=str(local_rank), HFREDUCE_LOCAL_RANK=str(local_rank),
                HAI_SUSPEND_ADDR=self.suspend_addr, HAI_NODE_NAME=self.config.node_name, HAI_USER=start.user,
            )  # fmt: skip
            path = log_dir / f"rank-{rank}.log"
            with open(path, "ab") as logf:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())
                logf.write(
                    f"=== job {start.job_id} run {start.run_seq} rank {rank} on {self.config.node_name} at {stamp} UTC ===\n".encode()
                )
                logf.flush()
                try:
                    popen = subprocess.Popen(
                        rank_argv(start.command), cwd=start.workdir, env=env, stdout=logf,
                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                    )  # fmt: skip
                except OSError as exc:
                    logf.write(f"cannot start rank {rank} in {start.workdir!r}: {exc}\n".encode())
                    run.ranks[rank] = Rank(rank, None, 127)
                    continue
            run.ranks[rank] = Rank(rank, popen)
        log.info(
            "job %d run %d: started ranks %s (%s)",
            start.job_id,
            start.run_seq,
            list(start.ranks),
            shlex.quote(start.command),
        )

    def log_dir(self, job_id: int) -> Path:
        """Where this node keeps the job's rank logs."""
        return self.work_dir / "logs" / f"job-{job_id}"

    # -- in-job client ------------------------------------------------------------------------
    def _serve_zmq(self) -> None:
        poller = zmq.Poller()
        poller.register(self._rep, zmq.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(200):
                continue
            try:
                msg = json.loads(self._rep.recv())
                answer = self._client_request(msg)
            except Exception as exc:  # a malformed request must not kill the agent
                answer = {"error": str(exc)}
            self._rep.send(json.dumps(answer).encode())
        self._rep.close()

    def _client_request(self, msg: dict) -> dict:
        key = (int(msg["job"]), int(msg["seq"]))
        with self.lock:
            run = self.runs.get(key)
            if run is None:
                return {"error": f"job {key[0]} run {key[1]} is not running on {self.config.node_name}"}
            if msg["op"] == "poll":
                # Only rank 0 sees the command (HAI-Platform: "seen only by rank 0").
                return {"suspend": run.suspend_requested and int(msg["rank"]) == 0}
            if msg["op"] == "ready":
                log.info("job %d run %d: rank %s called go_suspend()", key[0], key[1], msg["rank"])
                run.suspend_ready = True
                run.stop(run.term_s)
                return {"ok": True}
        return {"error": f"unknown op {msg['op']!r}"}

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

    def ReadLog(self, request, context):  # noqa: ANN001, ANN201
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
