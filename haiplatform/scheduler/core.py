"""The scheduler's state machine: jobs, node liveness, and the commands that bring agents in line.

All state changes happen under one lock and are written to the store before the lock is released.
Commands to agents are *level-triggered*: every heartbeat reply is computed from the current job
table and the ranks the agent reports (start what should run, suspend/kill what should not, forget
what was recorded), so nothing is lost when a reply or a scheduler restart drops a message.

The agent side (heartbeats, run starts and exits, failover) is in ``runs``; the pure parts live
beside it: the policy (``policy``), the field and admission rules (``jobspec``), the dependency
rule (``dependencies``). Over ~500 lines on purpose: the job verbs, their bookkeeping (usage,
dependencies, fences) and the cycle share one lock and one set of invariants.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from haiplatform import errors
from haiplatform.protos import scheduler_pb2
from haiplatform.scheduler import dependencies, jobspec, policy
from haiplatform.scheduler.runs import FENCE_MARGIN_S, NodeState, RunReconciler
from haiplatform.scheduler.store import TERMINAL_STATES, JobRecord, Store, Transition, User, decayed

log = logging.getLogger("haiplatform.scheduler")


@dataclass
class SchedulerConfig:
    """Timing and policy knobs of one scheduler (defaults are production values, tests shorten them)."""

    heartbeat_s: float = 1.0  # agents' heartbeat interval
    node_timeout_s: float = 10.0  # no heartbeat for this long: node down, its jobs failed over
    cycle_s: float = 0.5  # at most this long between scheduling cycles
    min_cycle_gap_s: float = 0.02  # at least this long between cycles, so bursts of submits batch
    suspend_grace_s: float = 5.0  # a suspended job that has not left by then is stopped
    term_s: float = 2.0  # SIGTERM -> SIGKILL delay when stopping ranks
    decay_s: float = 1800.0  # ABOVE_NORMAL -> NORMAL after this long since first start
    # A run's lease: its supervisor stops it when no heartbeat renewed it for this long; a job failed
    # over from a silent node restarts only after lease_s + term_s + FENCE_MARGIN_S (no two live runs).
    lease_s: float = 30.0
    backfill: bool = True
    fairshare_half_life_s: float = 7 * 86400.0  # decay of the usage fair share orders by; 0 = no fair share


class SchedulerCore(RunReconciler):
    """The scheduler's state machine; thread-safe; used by the gRPC servicers."""

    def __init__(self, store: Store, config: SchedulerConfig | None = None) -> None:
        self.store = store
        self.config = config or SchedulerConfig()
        self.lock = threading.RLock()
        self.kick = threading.Event()
        self._stop = threading.Event()
        self._token_cache: dict[str, User] = {}
        now = time.time()
        self.jobs: dict[int, JobRecord] = {j.job_id: j for j in store.active_jobs()}
        self.nodes: dict[str, NodeState] = {}
        mono = time.monotonic()
        for name, slots, drained, reason in store.load_nodes():
            # A restart renews every node's lease: agents that are alive re-report within it.
            self.nodes[name] = NodeState(name, slots, drained, reason, last_heartbeat=now, renewed_mono=mono)
        # Job id -> CLOCK_MONOTONIC before which it must not start again: a run of it may still hold
        # a lease on a node that went silent. After a restart that is unknown, so every job that ran
        # before waits out one lease.
        self.fenced: dict[int, float] = {
            j.job_id: mono + self.config.lease_s + self.config.term_s + FENCE_MARGIN_S
            for j in self.jobs.values()
            if j.run_seq > 0 and self.config.lease_s > 0
        }
        self.quotas = store.quotas()
        # Per run (job, run_seq): rank -> exit code, as reported by agents.
        self.exits: dict[tuple[int, int], dict[int, int]] = {}
        self.suspend_ready: set[tuple[int, int]] = set()
        self.requeue_runs: dict[
            tuple[int, int], str
        ] = {}  # run -> who requeued it (stopped, not checkpointed)
        self.cycle_times_s: list[float] = []
        self.usage = store.usage()  # user -> (decayed node-seconds, as of) for fair share
        self._ended: dict[int, dependencies.JobStatus] = {}  # ended jobs that others depend on
        self._deps_met: set[int] = set()  # queued jobs whose dependencies all held once
        # Job id -> the queued jobs depending on it; a dependent is re-checked only after one of the
        # jobs it names changed state (it is in _deps_waiting, known to wait, until then).
        self._dependents: dict[int, set[int]] = {}
        self._slot_counts: dict[int, int] | None = (
            None  # slots -> how many nodes have that many; None: recount
        )
        self._deps_waiting: set[int] = set()
        for job in self.jobs.values():
            self._index_dependencies(job)
        self._waiting: dict[int, str] = {}  # the last cycle's pending reasons from the policy
        self._thread = threading.Thread(target=self._loop, name="sched-loop", daemon=True)

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the scheduling loop thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the loop thread."""
        self._stop.set()
        self.kick.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.kick.wait(self.config.cycle_s)
            self.kick.clear()
            if self._stop.is_set():
                break
            try:
                self.cycle()
            except Exception:  # keep scheduling; the error is in the log
                log.exception("scheduling cycle failed")
            self._stop.wait(self.config.min_cycle_gap_s)

    # -- auth -------------------------------------------------------------------------------
    def authenticate(self, token: str) -> User:
        """The user holding ``token``; raises Unauthenticated."""
        if not token:
            raise errors.Unauthenticated("missing token (pass --token or set HAI_TOKEN)")
        user = self._token_cache.get(token)
        if user is None:
            with self.lock:
                user = self.store.user_by_token(token)
            if user is None:
                raise errors.Unauthenticated("unknown token")
            self._token_cache[token] = user
        return user

    def bootstrap_admin(self, token_file: Path) -> str:
        """Reuse the admin token in ``token_file`` if valid, else create one and write it there (0600)."""
        if token_file.exists():
            token = token_file.read_text().strip()
            with self.lock:
                if self.store.user_by_token(token) is not None:
                    return token
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.store.add_user("admin", "admin", True, token)
        token_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = token_file.with_suffix(".tmp")
        tmp.touch(mode=0o600)
        tmp.chmod(0o600)
        tmp.write_text(token + "\n")
        tmp.replace(token_file)
        return token

    def add_user(self, caller: User, name: str, group: str, admin: bool) -> str:
        """Create (or re-key) a user; returns the new token. Admin only."""
        require_admin(caller, "add users")
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise errors.InvalidSpec("name: must be letters, digits, '-', '_' or '.'")
        token = secrets.token_urlsafe(24)
        with self.lock:
            self.store.add_user(name, group or name, admin, token)
        self._token_cache.clear()
        return token

    # -- jobs -------------------------------------------------------------------------------
    def submit(self, caller: User, spec: scheduler_pb2.JobSpec) -> int:
        """Validate and queue a job; returns its id (an array's: its first task's)."""
        return self.submit_jobs(caller, spec)[0]

    def submit_jobs(self, caller: User, spec: scheduler_pb2.JobSpec) -> list[int]:
        """Validate and queue a job, or every task of an array; returns their ids."""
        now = time.time()
        job = jobspec.to_record(spec, caller, now)
        with self.lock:
            self._admit(job)
            if spec.array:
                indices, limit = jobspec.parse_array(spec.array)
                tasks = [dataclasses.replace(job, array_index=i, array_limit=limit) for i in indices]
                ids = self.store.insert_array(tasks, now, f"submitted (array of {len(tasks)})")
                self.jobs.update((t.job_id, t) for t in tasks)
            else:
                ids = [self.store.insert_job(job, now, "submitted")]
                self.jobs[job.job_id] = job
                tasks = [job]
            if job.depends:
                for task in tasks:
                    self._index_dependencies(task)
        self.kick.set()
        return ids

    def _admit(self, job: JobRecord) -> None:
        """Reject a job this cluster could never run (more nodes, slots or quota than exist); expand and
        check its dependencies. Caller holds the lock."""
        if self._slot_counts is None:
            self._slot_counts = dict(collections.Counter(n.slots for n in self.nodes.values()))
        jobspec.check_against_cluster(job, self._slot_counts, self.quotas)
        expanded: list[tuple[str, int]] = []
        for kind, dep_id in job.depends:
            dep = self.jobs.get(dep_id) or self.store.get_job(dep_id)
            if dep is None:
                raise errors.InvalidSpec(f"depends_on: {kind}:{dep_id}: no such job")
            if dep.array_id == dep_id:  # an array's id stands for all of its tasks
                expanded.extend((kind, t.job_id) for t in self.store.array_tasks(dep_id))
            else:
                expanded.append((kind, dep_id))
        job.depends = list(dict.fromkeys(expanded))
        state, detail = dependencies.dependency_state(job.depends, self._job_status)
        if state == dependencies.NEVER:
            raise errors.InvalidSpec(f"depends_on: {detail} can never be satisfied")

    def _index_dependencies(self, job: JobRecord) -> None:
        for _kind, dep_id in job.depends:
            self._dependents.setdefault(dep_id, set()).add(job.job_id)

    def _job_status(self, job_id: int) -> dependencies.JobStatus | None:
        """(state, has started) of any job, for dependencies; ended jobs are cached."""
        job = self.jobs.get(job_id)
        if job is not None:
            return job.state, job.run_seq > 0
        status = self._ended.get(job_id)
        if status is None:
            rec = self.store.get_job(job_id)
            if rec is None:
                return None
            status = self._ended[job_id] = (rec.state, rec.run_seq > 0)
        return status

    def pending_reason(self, job: JobRecord, now: float | None = None) -> str:
        """Why a queued job is not running (Slurm's names); "" for a job that is not queued."""
        if job.state != "queued":
            return ""
        if job.hold:
            return "Held"
        if job.begin_at > (now or time.time()) or job.job_id in self.fenced:
            return "BeginTime"  # (fenced: as Slurm delays a requeued job, until its old run's lease is over)
        if job.depends and job.job_id not in self._deps_met:
            return "Dependency"
        return self._waiting.get(job.job_id, "Priority")

    def _annotate(self, jobs: list[JobRecord]) -> list[JobRecord]:
        now = time.time()
        for job in jobs:
            live = self.jobs.get(job.job_id)
            job.pending_reason = self.pending_reason(live or job, now)
            if job.state in ("running", "suspending") and job.started_at:
                job.used_s += now - job.started_at  # the run so far
        return jobs

    def _job_for(self, caller: User, job_id: int, action: str) -> JobRecord:
        job = self.jobs.get(job_id) or self.store.get_job(job_id)
        if job is None:
            raise errors.NotFound(f"job {job_id}: no such job")
        if job.user != caller.name and not caller.admin:
            raise errors.PermissionDenied(f"job {job_id} belongs to {job.user}: you cannot {action} it")
        return job

    def _transition(self, job: JobRecord, state: str, reason: str, now: float | None = None) -> Transition:
        t = Transition(job.job_id, now or time.time(), job.state, state, reason)
        if state != job.state and job.job_id in self._dependents:
            self._deps_waiting.difference_update(self._dependents[job.job_id])  # check them again
        holding = ("running", "suspending")
        if job.state in holding and state not in holding and job.started_at:
            run_s = max(0.0, t.at - job.started_at)  # a run ends: account for it
            job.used_s += run_s
            if self.config.fairshare_half_life_s > 0:
                total = self.store.add_usage(
                    job.user, run_s * job.nodes, t.at, self.config.fairshare_half_life_s
                )
                self.usage[job.user] = (total, t.at)
        job.state, job.reason = state, reason
        return t

    def _persist(self, job: JobRecord, *transitions: Transition) -> None:
        self.store.update_job(job, transitions)
        if job.state in TERMINAL_STATES:
            self.jobs.pop(job.job_id, None)
            self._deps_met.discard(job.job_id)
            self._deps_waiting.discard(job.job_id)
            self._ended[job.job_id] = (job.state, job.run_seq > 0)
            for _kind, dep_id in job.depends:
                if (dependents := self._dependents.get(dep_id)) is not None:
                    dependents.discard(job.job_id)
                    if not dependents:
                        del self._dependents[dep_id]
            for key in [k for k in self.exits if k[0] == job.job_id]:
                self.exits.pop(key, None)

    def cancel(self, caller: User, job_id: int) -> JobRecord:
        """Cancel a job in any non-terminal state; its ranks are killed on the next heartbeats."""
        with self.lock:
            job = self._job_for(caller, job_id, "cancel")
            if job.state in TERMINAL_STATES:
                raise errors.InvalidState(f"job {job_id} is already {job.state}")
            now = time.time()
            t = self._transition(job, "cancelled", f"cancelled by {caller.name}", now)
            job.finished_at = now
            self._persist(job, t)
        self.kick.set()
        return job

    def suspend(self, caller: User, job_id: int) -> JobRecord:
        """Suspend a job and hold it until resumed (running jobs checkpoint first)."""
        with self.lock:
            job = self._job_for(caller, job_id, "suspend")
            if job.state == "running":
                job.hold = True
                t = self._transition(job, "suspending", f"suspended by {caller.name}")
            elif job.state == "queued":
                job.hold = True
                t = self._transition(job, "suspended", f"suspended by {caller.name} while queued")
            elif job.state == "suspending":
                job.hold = True
                self._persist(job)
                return job
            else:
                raise errors.InvalidState(
                    f"job {job_id} is {job.state}: only queued or running jobs can be suspended"
                )
            self._persist(job, t)
        self.kick.set()
        return job

    def resume(self, caller: User, job_id: int) -> JobRecord:
        """Put a suspended job back in the queue (it re-runs its command, which loads its checkpoint)."""
        with self.lock:
            job = self._job_for(caller, job_id, "resume")
            if job.state == "suspending":
                job.hold = False
                self._persist(job)
                return job
            if job.state != "suspended":
                raise errors.InvalidState(f"job {job_id} is {job.state}: only suspended jobs can be resumed")
            job.hold = False
            self._persist(job, self._transition(job, "queued", f"resumed by {caller.name}"))
        self.kick.set()
        return job

    def hold(self, caller: User, job_id: int) -> JobRecord:
        """Keep a queued job from starting until released (Slurm's ``scontrol hold``)."""
        with self.lock:
            job = self._job_for(caller, job_id, "hold")
            if job.state != "queued":
                raise errors.InvalidState(
                    f"job {job_id} is {job.state}: only queued jobs can be held (suspend a running one)"
                )
            if not job.hold:
                job.hold = True
                self._persist(job, self._transition(job, "queued", f"held by {caller.name}"))
        return job

    def release(self, caller: User, job_id: int) -> JobRecord:
        """Let a held queued job start again."""
        with self.lock:
            job = self._job_for(caller, job_id, "release")
            if job.state != "queued" or not job.hold:
                hint = ": resume it" if job.state == "suspended" else ""
                raise errors.InvalidState(f"job {job_id} is {job.state}, not held{hint}")
            job.hold = False
            self._persist(job, self._transition(job, "queued", f"released by {caller.name}"))
        self.kick.set()
        return job

    def requeue(self, caller: User, job_id: int) -> JobRecord:
        """Queue a job again: a running one is stopped without waiting for a checkpoint (its command
        runs again, with HAI_RESUMED=1), a suspended one is queued, an ended one reopened."""
        with self.lock:
            job = self._job_for(caller, job_id, "requeue")
            now = time.time()
            why = f"requeued by {caller.name}"
            if job.state == "running":
                run = (job.job_id, job.run_seq)
                self.suspend_ready.add(run)  # stop the ranks now, no suspend grace
                self.requeue_runs[run] = why
                self._persist(job, self._transition(job, "suspending", f"{why}: stopping its ranks", now))
            elif job.state == "suspending":
                self.requeue_runs[(job.job_id, job.run_seq)] = why
                job.hold = False
                self._persist(job)
            elif job.state == "suspended":
                job.hold = False
                self._persist(job, self._transition(job, "queued", why, now))
            elif job.state in TERMINAL_STATES:
                job.hold, job.finished_at, job.exit_code = False, 0.0, 0
                self._ended.pop(job.job_id, None)
                self.jobs[job.job_id] = job
                self._index_dependencies(job)
                self._persist(job, self._transition(job, "queued", why, now))
            else:
                raise errors.InvalidState(f"job {job_id} is already queued")
        self.kick.set()
        return job

    def get_job(self, caller: User, job_id: int) -> tuple[JobRecord, list[Transition]]:
        """A job and its history (anyone may read job metadata; logs are owner-only)."""
        with self.lock:
            job = self.store.get_job(job_id)
            if job is None:
                raise errors.NotFound(f"job {job_id}: no such job")
            return self._annotate([job])[0], self.store.transitions(job_id)

    def list_jobs(
        self, states: list[str], user: str, limit: int, since: float = 0.0, until: float = 0.0
    ) -> list[JobRecord]:
        """Jobs newest first, with their pending reasons; ``since``/``until`` bound the submission time."""
        with self.lock:
            return self._annotate(self.store.list_jobs(states, user, limit or 1000, since=since, until=until))

    def log_location(self, caller: User, job_id: int, rank: int) -> tuple[NodeState, bool]:
        """The node holding ``rank``'s log for the job's latest run, and whether the job is done."""
        with self.lock:
            job = self._job_for(caller, job_id, "read the logs of")
            world = job.nodes * job.ranks_per_node
            if rank >= world:
                raise errors.InvalidSpec(f"rank: job {job_id} has ranks 0..{world - 1}, not {rank}")
            if not job.assigned:
                raise errors.InvalidState(f"job {job_id} has not started yet: no logs")
            node = self.nodes.get(job.assigned[rank // job.ranks_per_node])
            if node is None or not node.log_address:
                raise errors.SchedulerUnavailable(f"node of rank {rank} has not reported its log address")
            return node, job.state in TERMINAL_STATES

    # -- nodes and quotas ---------------------------------------------------------------------
    def set_drain(self, caller: User, name: str, drained: bool, reason: str) -> NodeState:
        """Drain (no new jobs) or undrain a node. Admin only."""
        require_admin(caller, "drain nodes")
        with self.lock:
            node = self.nodes.get(name)
            if node is None:
                raise errors.NotFound(f"node {name}: no such node")
            node.drained = drained
            node.drain_reason = (reason or f"drained by {caller.name}") if drained else ""
            self.store.save_node(node.name, node.slots, node.drained, node.drain_reason)
        self.kick.set()
        return node

    def set_quota(self, caller: User, scope: str, name: str, priority: int, max_nodes: int) -> None:
        """Set or remove a node quota. Admin only."""
        require_admin(caller, "set quotas")
        if scope not in ("user", "group"):
            raise errors.InvalidSpec("scope: must be 'user' or 'group'")
        if not name:
            raise errors.InvalidSpec("name: must not be empty")
        if priority and priority not in {p.value for p in policy.Priority}:
            raise errors.InvalidSpec(f"priority: unknown priority {priority}")
        with self.lock:
            self.store.set_quota(scope, name, priority, max_nodes)
            self.quotas = self.store.quotas()
        self.kick.set()

    def jobs_on_nodes(self) -> dict[str, list[int]]:
        """Node name -> ids of jobs holding it."""
        out: dict[str, list[int]] = {}
        for job in self.jobs.values():
            if job.state in ("running", "suspending"):
                for n in job.assigned:
                    out.setdefault(n, []).append(job.job_id)
        return out

    # -- scheduling -------------------------------------------------------------------------
    def cycle(self) -> policy.Decisions:
        """One scheduling cycle: liveness, unhealthy-node evacuation, the policy, applying its decisions."""
        with self.lock:
            now = time.time()
            self._check_liveness(now)
            node_views = [
                policy.NodeView(n.name, n.schedulable)
                for n in sorted(self.nodes.values(), key=lambda n: n.name)
            ]
            running, queue = [], []
            mono = time.monotonic()
            for job_id in [j for j, until in self.fenced.items() if until <= mono]:
                del self.fenced[job_id]
            never: list[tuple[JobRecord, str]] = []
            usage: dict[str, float] = {}
            half_life = self.config.fairshare_half_life_s
            for job in self.jobs.values():
                if job.state in ("running", "suspending"):
                    if job.state == "running" and any(
                        (n := self.nodes.get(name)) is not None and n.up and not n.healthy
                        for name in job.assigned
                    ):
                        self._persist(
                            job, self._transition(job, "suspending", "node failed its health check", now)
                        )
                    running.append(
                        policy.RunningJob(
                            job.job_id, job.user, job.group, job.priority, tuple(job.assigned), job.started_at,
                            job.first_started_at, job.state == "suspending", job.time_limit_s, job.array_id,
                        )
                    )  # fmt: skip
                    if half_life > 0:  # the run so far counts toward fair share
                        usage[job.user] = usage.get(job.user, 0.0) + job.nodes * max(
                            0.0, now - job.started_at
                        )
                elif job.state == "queued" and job.job_id not in self.fenced:
                    if job.hold or job.begin_at > now:
                        continue
                    if job.depends and job.job_id not in self._deps_met:
                        if job.job_id in self._deps_waiting:
                            continue  # none of the jobs it waits for changed state since
                        state, detail = dependencies.dependency_state(job.depends, self._job_status)
                        if state == dependencies.WAIT:
                            self._deps_waiting.add(job.job_id)
                            continue
                        if state == dependencies.NEVER:
                            never.append((job, detail))
                            continue
                        self._deps_met.add(job.job_id)
                    queue.append(
                        policy.QueuedJob(
                            job.job_id, job.user, job.group, job.priority, job.nodes, job.submitted_at,
                            job.time_limit_s, job.array_id, job.array_limit,
                        )
                    )  # fmt: skip
            for job, detail in never:
                job.finished_at = now
                self._persist(
                    job,
                    self._transition(job, "cancelled", f"dependency {detail} can never be satisfied", now),
                )
            if half_life > 0:
                for user, (node_s, at) in self.usage.items():
                    usage[user] = usage.get(user, 0.0) + decayed(node_s, now - at, half_life)
            cfg = policy.PolicyConfig(
                decay_s=self.config.decay_s, quotas=self.quotas, backfill=self.config.backfill, usage=usage
            )
            t0 = time.perf_counter()
            decisions = policy.schedule(node_views, running, queue, now, cfg)
            self.cycle_times_s.append(time.perf_counter() - t0)
            del self.cycle_times_s[:-1000]
            self._waiting = decisions.waiting
            for job_id in decisions.decay:
                job = self.jobs[job_id]
                job.priority = int(policy.Priority.NORMAL)
                self._persist(
                    job,
                    Transition(job_id, now, job.state, job.state, "priority ABOVE_NORMAL decayed to NORMAL"),
                )
            for victim, for_job in decisions.preempt:
                job = self.jobs[victim]
                self._persist(job, self._transition(job, "suspending", f"preempted for job {for_job}", now))
            for job_id, nodes in decisions.start:
                job = self.jobs[job_id]
                first = self.nodes[nodes[0]]
                port = (
                    first.spare_ports.pop(0)
                    if first.spare_ports
                    else 29500 + (job_id * 7 + job.run_seq) % 20000
                )
                job.run_seq += 1
                job.assigned = list(nodes)
                job.master_addr, job.master_port = first.host or "127.0.0.1", port
                job.started_at = now
                job.first_started_at = job.first_started_at or now
                job.exit_code = 0
                what = "started" if job.run_seq == 1 else f"resumed (run {job.run_seq})"
                self._persist(job, self._transition(job, "running", f"{what} on {','.join(nodes)}", now))
            return decisions


def require_admin(caller: User, what: str) -> None:
    """Raise PermissionDenied unless ``caller`` is an admin; ``what`` completes "only admins may ..."."""
    if not caller.admin:
        raise errors.PermissionDenied(f"only admins may {what}; you are {caller.name}")
