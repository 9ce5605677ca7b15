"""The node agent: heartbeats to the scheduler, runs each job run under a supervisor, delivers suspends.

One agent per node. Each run's local ranks are started by a per-run supervisor process
(``haiplatform/agent/supervisor.py``): a child subreaper in its own session, with a cgroup v2 per
run where the host has a writable hierarchy, that holds the run's lease and kills every process of
the run (double-forked ones too) when it is stopped, its lease expires, or this agent dies. A rank
is its argv exec'd directly, or ``/bin/sh -c COMMAND`` for shell jobs, with stdout and stderr in
``WORK_DIR/logs/job-ID/rank-R.log``. The in-job client (``haiplatform.job``) talks to the agent
over a pyzmq ROUTER socket whose address is in the rank's ``HAI_SUSPEND_ADDR``; every message is
validated, and malformed ones are logged and answered with an error.

This module is the heartbeat loop and the orders it applies; starting and tracking runs is in
``runs.py``, the in-job port in ``jobport.py``, the log service in ``logs.py``, health in ``health.py``.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from ffcommon.metrics import GrpcMetricsInterceptor
from ffcommon.ports import free_port
from haiplatform.agent.health import builtin_validator, check_health
from haiplatform.agent.jobport import (
    MAX_CLIENT_MESSAGE_BYTES,
    MAX_ZMQ_FRAME_BYTES,
    JobPort,
    parse_client_request,
)
from haiplatform.agent.logs import MAX_LOG_READ_BYTES, LogService
from haiplatform.agent.runs import (
    MAX_RANKS_PER_START,
    Rank,
    Run,
    RunStarter,
    cgroup_v2_parent,
    check_start,
    supervisor_argv,
    wire_seconds,
)
from haiplatform.protos import agent_pb2, agent_pb2_grpc

# Re-exported: these names were defined here before the split, and callers import them from here.
__all__ = [
    "MAX_CLIENT_MESSAGE_BYTES", "MAX_LOG_READ_BYTES", "MAX_RANKS_PER_START", "MAX_ZMQ_FRAME_BYTES",
    "Agent", "AgentConfig", "Rank", "Run", "builtin_validator", "cgroup_v2_parent", "check_start",
    "parse_client_request", "supervisor_argv",
]  # fmt: skip

log = logging.getLogger("haiplatform.agent")


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
        self._jobport = JobPort(config, self.runs, self.lock, self._stop)
        self.suspend_addr = self._jobport.address
        self._starter = RunStarter(self.runs, self.lock, config, self.cgroup_parent, self.suspend_addr)
        self._log_server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4), interceptors=[GrpcMetricsInterceptor()]
        )
        agent_pb2_grpc.add_AgentLogsServicer_to_server(LogService(self), self._log_server)
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
            threading.Thread(target=self._jobport.serve, name="zmq", daemon=True),
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
                    self._starter.start(start, deadline)
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
                    run.grace_deadline = now + wire_seconds(sus.grace_s, 5.0)
                    run.term_s = wire_seconds(sus.term_s, 2.0)
                    log.info(
                        "job %d run %d: suspend requested (grace %.1f s)",
                        sus.job_id,
                        sus.run_seq,
                        sus.grace_s,
                    )
            for kill in reply.kill:
                run = self.runs.get((kill.job_id, kill.run_seq))
                if run is not None:
                    run.stop(wire_seconds(kill.term_s, 2.0), kill.reason or "killed by the scheduler")
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

    def log_dir(self, job_id: int) -> Path:
        """Where this node keeps the job's rank logs."""
        return self._starter.log_dir(job_id)

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
        return check_health(self.config.health_check, self.work_dir)
