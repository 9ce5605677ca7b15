"""The agent side of the scheduler's state machine: heartbeats, run starts and exits, node failover.

``RunReconciler`` is a part of :class:`haiplatform.scheduler.core.SchedulerCore` (its base class),
kept in its own file because it is the half a reader follows from an agent's heartbeat: each reply
is computed from the job table and the ranks the agent reports (level-triggered), under the core's
one lock, and every state change goes through the core's ``_transition``/``_persist``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from haiplatform.protos import agent_pb2
from haiplatform.scheduler.store import JobRecord

log = logging.getLogger("haiplatform.scheduler")

FENCE_MARGIN_S = 1.0  # slack for the supervisor's reaction time and clock-rate differences


@dataclass
class NodeState:
    """What the scheduler knows about one node; only name/slots/drain survive a restart."""

    name: str
    slots: int
    drained: bool = False
    drain_reason: str = ""
    seen: bool = False  # heartbeat received since this scheduler started
    up: bool = True
    healthy: bool = True
    health_reason: str = ""
    last_heartbeat: float = 0.0
    log_address: str = ""
    host: str = ""
    spare_ports: list[int] = field(default_factory=list)
    agent_started_at: float = 0.0
    renewed_mono: float = 0.0  # CLOCK_MONOTONIC of the last heartbeat that renewed this node's leases

    @property
    def schedulable(self) -> bool:
        return self.seen and self.up and self.healthy and not self.drained

    @property
    def reason(self) -> str:
        if not self.up:
            return "no heartbeat"
        if not self.healthy:
            return self.health_reason or "health check failed"
        if self.drained:
            return self.drain_reason or "drained"
        return ""


class RunReconciler:
    """Heartbeat handling and the run lifecycle of :class:`SchedulerCore` (see the module docstring)."""

    # -- agents -----------------------------------------------------------------------------
    def heartbeat(self, req: agent_pb2.HeartbeatRequest) -> agent_pb2.HeartbeatReply:
        """Record a node's liveness and rank states; return the commands that bring it in line."""
        now = time.time()
        reply = agent_pb2.HeartbeatReply(heartbeat_s=self.config.heartbeat_s, lease_s=self.config.lease_s)
        changed = False
        with self.lock:
            node = self.nodes.get(req.node)
            if node is None:
                node = NodeState(req.node, req.slots)
                self._slot_counts = None
                self.nodes[req.node] = node
                self.store.save_node(node.name, node.slots, False, "")
                changed = True
            if node.slots != req.slots:
                node.slots = req.slots
                self._slot_counts = None
                self.store.save_node(node.name, node.slots, node.drained, node.drain_reason)
            restarted = node.agent_started_at and node.agent_started_at != req.agent_started_at
            if restarted or not node.up:
                # A new agent process (its ranks died with the old one), or a node back from
                # down: whatever it ran before was already failed over, or must be now.
                self._fail_over_node(
                    node,
                    "agent restarted" if restarted else "node came back",
                    now,
                    agent_gone=bool(restarted),
                )
                changed = True
            if not node.seen or node.healthy != req.healthy:
                changed = True
            node.seen, node.up = True, True
            node.last_heartbeat = now
            node.renewed_mono = time.monotonic()
            node.agent_started_at = req.agent_started_at
            node.healthy, node.health_reason = req.healthy, req.health_reason
            node.log_address, node.host = req.log_address, req.host
            node.spare_ports = list(req.spare_ports)

            reported: dict[tuple[int, int], list[agent_pb2.RankStatus]] = {}
            for rs in req.ranks:
                reported.setdefault((rs.job_id, rs.run_seq), []).append(rs)
            for (job_id, seq), ranks in reported.items():
                job = self.jobs.get(job_id)
                current = (
                    job is not None
                    and job.run_seq == seq
                    and job.state in ("running", "suspending")
                    and node.name in job.assigned
                )
                if (
                    current
                    and any(r.suspend_ready for r in ranks)
                    and (job_id, seq) not in self.suspend_ready
                ):
                    self.suspend_ready.add((job_id, seq))
                    if job.state == "running":
                        # go_suspend() without a suspend command: the job asks to be suspended.
                        self._persist(
                            job, self._transition(job, "suspending", "job called go_suspend()", now)
                        )
                for rs in ranks:
                    if not rs.running and current:
                        changed |= self._record_exit(
                            job, node.name, rs.rank, rs.exit_code, now, rs.reason, rs.fenced
                        )
                current = current and job.state in ("running", "suspending") and job.run_seq == seq
                running = [r for r in ranks if r.running]
                if running and (not current or (job_id, seq) in self.suspend_ready):
                    reply.kill.append(
                        agent_pb2.KillRun(
                            job_id=job_id, run_seq=seq, term_s=self.config.term_s,
                            reason="suspended" if current else "run no longer current",
                        )
                    )  # fmt: skip
                elif running:
                    reply.renew.append(agent_pb2.RunRef(job_id=job_id, run_seq=seq))
                if (
                    running
                    and current
                    and (job_id, seq) not in self.suspend_ready
                    and job.state == "suspending"
                ):
                    reply.suspend.append(
                        agent_pb2.SuspendRun(
                            job_id=job_id,
                            run_seq=seq,
                            grace_s=self.config.suspend_grace_s,
                            term_s=self.config.term_s,
                        )
                    )
                if not current and len(running) < len(ranks):
                    reply.forget.append(agent_pb2.ForgetRun(job_id=job_id, run_seq=seq))
            # Start runs assigned here that the agent does not know yet.
            for job in self.jobs.values():
                if job.state != "running" or node.name not in job.assigned:
                    continue
                if (job.job_id, job.run_seq) in reported:
                    continue
                if (job.job_id, job.run_seq) in self.exits and self._node_exited(job, node.name):
                    continue
                reply.start.append(self._start_message(job, node.name))
        if changed:
            self.kick.set()
        return reply

    def _node_exited(self, job: JobRecord, node: str) -> bool:
        exits = self.exits.get((job.job_id, job.run_seq), {})
        node_rank = job.assigned.index(node)
        ranks = range(node_rank * job.ranks_per_node, (node_rank + 1) * job.ranks_per_node)
        return any(r in exits for r in ranks)

    def _start_message(self, job: JobRecord, node: str) -> agent_pb2.StartRun:
        node_rank = job.assigned.index(node)
        rpn = job.ranks_per_node
        env = dict(job.env)
        env.update(
            WORLD_SIZE=str(job.nodes * rpn),
            LOCAL_WORLD_SIZE=str(rpn),
            HFREDUCE_LOCAL_WORLD_SIZE=str(rpn),
            NODE_RANK=str(node_rank),
            NNODES=str(job.nodes),
            MASTER_ADDR=job.master_addr,
            MASTER_IP=job.master_addr,
            MASTER_PORT=str(job.master_port),
            HAI_JOB_ID=str(job.job_id),
            HAI_RUN_SEQ=str(job.run_seq),
            HAI_JOB_NAME=job.name,
            HAI_RESUMED="1" if job.run_seq > 1 else "0",
        )
        if job.array_id:
            env.update(HAI_ARRAY_JOB_ID=str(job.array_id), HAI_ARRAY_INDEX=str(job.array_index))
        return agent_pb2.StartRun(
            job_id=job.job_id,
            run_seq=job.run_seq,
            command="" if job.argv else job.command,
            argv=job.argv,
            workdir=job.workdir,
            env=env,
            ranks=list(range(node_rank * rpn, (node_rank + 1) * rpn)),
            user=job.user,
            term_s=self.config.term_s,
        )

    def _record_exit(
        self,
        job: JobRecord,
        node: str,
        rank: int,
        code: int,
        now: float,
        cause: str = "",
        fenced: bool = False,
    ) -> bool:
        """Record one rank's exit of the current run (``cause``: why it could not start; ``fenced``: its
        lease expired, a platform fault that requeues the job); finish the run when that decides it."""
        exits = self.exits.setdefault((job.job_id, job.run_seq), {})
        if rank in exits:
            return False
        exits[rank] = code
        world = job.nodes * job.ranks_per_node
        if fenced:
            # The other ranks of this run are told to stop on their next heartbeat.
            until = time.monotonic() + self.config.heartbeat_s + self.config.term_s + FENCE_MARGIN_S
            self.fenced[job.job_id] = max(self.fenced.get(job.job_id, 0.0), until)
            why = (
                f"run {job.run_seq} was fenced on {node}: its lease expired before a heartbeat renewed it; "
                "requeued to resume from its checkpoint"
            )
            self._persist(job, self._transition(job, "suspended" if job.hold else "queued", why, now))
            return True
        if job.state == "running" and code != 0:
            job.exit_code = code
            job.finished_at = now
            why = (
                f"{cause} (rank {rank} on {node}, exit code {code})"
                if cause
                else (f"rank {rank} on {node} exited with code {code}")
            )
            self._persist(job, self._transition(job, "failed", why, now))
            return True
        if len(exits) < world:
            return False
        finished = job.state == "running" or (
            (job.job_id, job.run_seq) not in self.suspend_ready and not any(exits.values())
        )  # a job that finished on its own while being asked to suspend has completed
        if finished:
            job.finished_at = now
            self._persist(job, self._transition(job, "completed", "all ranks exited with code 0", now))
        else:
            self._finish_suspend(job, now)
        return True

    def _finish_suspend(self, job: JobRecord, now: float) -> None:
        codes = self.exits.get((job.job_id, job.run_seq), {})
        requeued_by = self.requeue_runs.pop((job.job_id, job.run_seq), None)
        if requeued_by is not None:
            self.suspend_ready.discard((job.job_id, job.run_seq))
            self._persist(job, self._transition(job, "queued", f"{requeued_by}: ranks stopped", now))
            return
        job.suspend_count += 1
        if (job.job_id, job.run_seq) in self.suspend_ready:
            how = "checkpointed and called go_suspend()"
        else:
            how = f"did not call go_suspend() within the grace period; ranks stopped (exit codes {sorted(set(codes.values()))})"
        t1 = self._transition(job, "suspended", f"{job.reason}: {how}", now)
        if job.hold:
            self._persist(job, t1)
        else:
            t2 = self._transition(job, "queued", "requeued after suspend; resumes from its checkpoint", now)
            self._persist(job, t1, t2)

    def _fail_over_node(self, node: NodeState, why: str, now: float, agent_gone: bool = False) -> None:
        """Requeue every job holding ``node`` (it resumes from its checkpoint elsewhere) once the lease
        of its run there has expired and the run is killed; with ``agent_gone`` (a new agent process
        heartbeats) the old supervisors saw their agent die and are stopping already."""
        mono = time.monotonic()
        lease_end = node.renewed_mono + self.config.lease_s
        if agent_gone:
            lease_end = min(lease_end, mono)
        fence = lease_end + self.config.term_s + FENCE_MARGIN_S if self.config.lease_s > 0 else 0.0
        for job in list(self.jobs.values()):
            if job.state in ("running", "suspending") and node.name in job.assigned:
                wait = ""
                if fence > mono:
                    self.fenced[job.job_id] = max(self.fenced.get(job.job_id, 0.0), fence)
                    wait = f" after its run there is fenced off (lease expiry + kill grace, {fence - mono:.1f} s)"
                t = self._transition(
                    job, "queued" if not job.hold else "suspended",
                    f"node {node.name} {why}; requeued to resume from its checkpoint{wait}", now,
                )  # fmt: skip
                self._persist(job, t)

    def _check_liveness(self, now: float) -> None:
        for node in self.nodes.values():
            if node.up and now - node.last_heartbeat > self.config.node_timeout_s:
                node.up = False
                log.warning("node %s down: no heartbeat for %.1f s", node.name, now - node.last_heartbeat)
                self._fail_over_node(node, "down (no heartbeat)", now)
