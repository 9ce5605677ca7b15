"""The scheduler's gRPC servicers: decode a request, call :class:`SchedulerCore`, map errors to status codes.

``SchedulerService`` is the user API (haictl, the web page); ``AgentControlService`` is the agents'
heartbeat. Neither holds state of its own beyond the channels to agents' log services.
"""

from __future__ import annotations

import logging
import math
from concurrent import futures

import grpc

from ffcommon.metrics import GrpcMetricsInterceptor
from haiplatform import errors
from haiplatform.protos import agent_pb2, agent_pb2_grpc, scheduler_pb2, scheduler_pb2_grpc
from haiplatform.scheduler.core import NodeState, SchedulerCore, require_admin
from haiplatform.scheduler.store import JobRecord, Transition, User

log = logging.getLogger("haiplatform.scheduler")


def job_info(job: JobRecord, history: list[Transition] | None = None) -> scheduler_pb2.JobInfo:
    """The wire form of a job."""
    info = scheduler_pb2.JobInfo(
        job_id=job.job_id,
        spec=scheduler_pb2.JobSpec(
            name=job.name, command="" if job.argv else job.command, argv=job.argv, workdir=job.workdir,
            env=job.env, nodes=job.nodes, ranks_per_node=job.ranks_per_node, priority=job.base_priority,
            group=job.group, time_limit_s=job.time_limit_s, begin_at=job.begin_at,
            hold=job.hold and job.state == "queued",
            depends_on=[scheduler_pb2.Dependency(kind=k, job_id=i) for k, i in job.depends],
        ),
        user=job.user, state=job.state, reason=job.reason, priority=job.priority,
        submitted_at=job.submitted_at, started_at=job.started_at, finished_at=job.finished_at,
        assigned_nodes=job.assigned, run_seq=job.run_seq, exit_code=job.exit_code,
        suspend_count=job.suspend_count, pending_reason=job.pending_reason, array_id=job.array_id,
        array_index=job.array_index, elapsed_s=job.used_s, node_hours=job.used_s * job.nodes / 3600,
    )  # fmt: skip
    for t in history or ():
        info.history.add(at=t.at, from_state=t.from_state, to_state=t.to_state, reason=t.reason)
    return info


def _token(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata():
        if key == "authorization":
            return value.removeprefix("Bearer ").strip()
    return ""


def _rpc(fn):  # noqa: ANN001 - decorator
    """Turn HaiError into the matching gRPC status with the message."""

    def wrapper(self, request, context):  # noqa: ANN001
        try:
            return fn(self, request, context)
        except errors.HaiError as exc:
            context.abort(exc.code, str(exc))
        except grpc.RpcError:
            raise
        except Exception as exc:
            log.exception("internal error in %s", fn.__name__)
            context.abort(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}")

    wrapper.__name__ = fn.__name__
    return wrapper


class SchedulerService(scheduler_pb2_grpc.SchedulerServicer):
    """User-facing API (haictl, the web page)."""

    def __init__(self, core: SchedulerCore) -> None:
        self.core = core
        self._log_channels: dict[str, grpc.Channel] = {}

    def _user(self, context: grpc.ServicerContext) -> User:
        return self.core.authenticate(_token(context))

    @_rpc
    def Submit(self, request, context):  # noqa: ANN001, ANN201
        ids = self.core.submit_jobs(self._user(context), request)
        return scheduler_pb2.SubmitReply(job_id=ids[0], job_ids=ids)

    @_rpc
    def ListJobs(self, request, context):  # noqa: ANN001, ANN201
        self._user(context)
        jobs = self.core.list_jobs(
            list(request.states), request.user, request.limit, since=request.since, until=request.until
        )
        return scheduler_pb2.ListJobsReply(jobs=[job_info(j) for j in jobs])

    @_rpc
    def GetJob(self, request, context):  # noqa: ANN001, ANN201
        job, history = self.core.get_job(self._user(context), request.job_id)
        return job_info(job, history)

    @_rpc
    def Cancel(self, request, context):  # noqa: ANN001, ANN201
        return job_info(self.core.cancel(self._user(context), request.job_id))

    @_rpc
    def Suspend(self, request, context):  # noqa: ANN001, ANN201
        return job_info(self.core.suspend(self._user(context), request.job_id))

    @_rpc
    def Resume(self, request, context):  # noqa: ANN001, ANN201
        return job_info(self.core.resume(self._user(context), request.job_id))

    @_rpc
    def Hold(self, request, context):  # noqa: ANN001, ANN201
        return job_info(self.core.hold(self._user(context), request.job_id))

    @_rpc
    def Release(self, request, context):  # noqa: ANN001, ANN201
        return job_info(self.core.release(self._user(context), request.job_id))

    @_rpc
    def Requeue(self, request, context):  # noqa: ANN001, ANN201
        return job_info(self.core.requeue(self._user(context), request.job_id))

    @_rpc
    def TailLog(self, request, context):  # noqa: ANN001, ANN201
        node, done = self.core.log_location(self._user(context), request.job_id, request.rank)
        channel = self._log_channels.get(node.log_address)
        if channel is None:
            channel = self._log_channels[node.log_address] = grpc.insecure_channel(node.log_address)
        try:
            out = agent_pb2_grpc.AgentLogsStub(channel).ReadLog(
                agent_pb2.ReadLogRequest(
                    job_id=request.job_id, rank=request.rank, offset=request.offset,
                    max_bytes=request.max_bytes or 65536,
                ),
                timeout=5,
            )  # fmt: skip
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                if not done:  # the rank has not started yet: nothing to show so far
                    return scheduler_pb2.TailLogReply(next_offset=max(0, request.offset), node=node.name)
                raise errors.NotFound(exc.details()) from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise errors.InvalidSpec(exc.details()) from None
            raise errors.SchedulerUnavailable(
                f"agent of node {node.name} ({node.log_address}) holding rank {request.rank}'s log: {exc.code().name}"
            ) from None
        return scheduler_pb2.TailLogReply(
            data=out.data, next_offset=out.next_offset, job_done=done, node=node.name
        )

    def _node_info(self, node: NodeState, on: dict[str, list[int]]) -> scheduler_pb2.NodeInfo:
        return scheduler_pb2.NodeInfo(
            name=node.name, slots=node.slots, state="up" if node.up and node.seen else "down",
            healthy=node.healthy, drained=node.drained, reason=node.reason if node.seen else "waiting for heartbeat",
            last_heartbeat=node.last_heartbeat, job_ids=on.get(node.name, []), address=node.log_address,
        )  # fmt: skip

    @_rpc
    def ListNodes(self, request, context):  # noqa: ANN001, ANN201
        self._user(context)
        with self.core.lock:
            on = self.core.jobs_on_nodes()
            nodes = [self._node_info(n, on) for n in sorted(self.core.nodes.values(), key=lambda n: n.name)]
        return scheduler_pb2.ListNodesReply(nodes=nodes)

    @_rpc
    def Drain(self, request, context):  # noqa: ANN001, ANN201
        node = self.core.set_drain(self._user(context), request.name, True, request.reason)
        with self.core.lock:
            return self._node_info(node, self.core.jobs_on_nodes())

    @_rpc
    def Undrain(self, request, context):  # noqa: ANN001, ANN201
        node = self.core.set_drain(self._user(context), request.name, False, "")
        with self.core.lock:
            return self._node_info(node, self.core.jobs_on_nodes())

    def _quota_list(self) -> scheduler_pb2.QuotaList:
        with self.core.lock:
            items = sorted(self.core.quotas.items())
        return scheduler_pb2.QuotaList(
            quotas=[scheduler_pb2.Quota(scope=s, name=n, priority=p, max_nodes=m) for (s, n, p), m in items]
        )

    @_rpc
    def SetQuota(self, request, context):  # noqa: ANN001, ANN201
        self.core.set_quota(
            self._user(context), request.scope, request.name, request.priority, request.max_nodes
        )
        return self._quota_list()

    @_rpc
    def ListQuotas(self, request, context):  # noqa: ANN001, ANN201
        self._user(context)
        return self._quota_list()

    @_rpc
    def AddUser(self, request, context):  # noqa: ANN001, ANN201
        token = self.core.add_user(self._user(context), request.name, request.group, request.admin)
        return scheduler_pb2.AddUserReply(token=token)

    @_rpc
    def WhoAmI(self, request, context):  # noqa: ANN001, ANN201
        user = self._user(context)
        return scheduler_pb2.WhoAmIReply(user=user.name, group=user.group, admin=user.admin)


class AgentControlService(agent_pb2_grpc.AgentControlServicer):
    """Agent-facing API; agents authenticate with an admin token."""

    def __init__(self, core: SchedulerCore) -> None:
        self.core = core

    @_rpc
    def Heartbeat(self, request, context):  # noqa: ANN001, ANN201
        user = self.core.authenticate(_token(context))
        require_admin(user, "run node agents")
        check_heartbeat(request)
        return self.core.heartbeat(request)


MAX_HEARTBEAT_RANKS = 65536
MAX_TEXT_CHARS = 4096


def check_heartbeat(req: agent_pb2.HeartbeatRequest) -> None:
    """Refuse a malformed heartbeat before it touches any state; InvalidSpec names the field and limit."""
    if (
        not req.node
        or len(req.node) > 253
        or not all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in req.node)
    ):
        raise errors.InvalidSpec(f"node: {req.node[:80]!r} must be 1-253 letters, digits, '.', '_' or '-'")
    if not 1 <= req.slots <= 4096:
        raise errors.InvalidSpec(f"slots: {req.slots} is outside 1..4096")
    for name in ("log_address", "host"):
        if len(getattr(req, name)) > 255:
            raise errors.InvalidSpec(f"{name}: over the limit of 255 characters")
    if len(req.health_reason) > MAX_TEXT_CHARS:
        raise errors.InvalidSpec(f"health_reason: over the limit of {MAX_TEXT_CHARS} characters")
    if len(req.spare_ports) > 64 or not all(1 <= p <= 65535 for p in req.spare_ports):
        raise errors.InvalidSpec("spare_ports: at most 64 ports, each 1..65535")
    if not math.isfinite(req.agent_started_at) or req.agent_started_at < 0:
        raise errors.InvalidSpec(f"agent_started_at: {req.agent_started_at} is not a unix time")
    if len(req.ranks) > MAX_HEARTBEAT_RANKS:
        raise errors.InvalidSpec(f"ranks: {len(req.ranks)} entries, limit {MAX_HEARTBEAT_RANKS}")
    for i, rs in enumerate(req.ranks):
        if rs.job_id < 1 or rs.run_seq < 1:
            raise errors.InvalidSpec(f"ranks[{i}]: job_id and run_seq must be positive")
        if len(rs.reason) > MAX_TEXT_CHARS:
            raise errors.InvalidSpec(f"ranks[{i}].reason: over the limit of {MAX_TEXT_CHARS} characters")


def serve(
    core: SchedulerCore,
    address: str,
    tls: tuple[bytes, bytes] | None = None,
    max_workers: int = 16,
) -> tuple[grpc.Server, int]:
    """Start the gRPC server on ``address`` ("host:port"); returns it and the bound port."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers), interceptors=[GrpcMetricsInterceptor()]
    )
    scheduler_pb2_grpc.add_SchedulerServicer_to_server(SchedulerService(core), server)
    agent_pb2_grpc.add_AgentControlServicer_to_server(AgentControlService(core), server)
    if tls is not None:
        creds = grpc.ssl_server_credentials([(tls[1], tls[0])])
        port = server.add_secure_port(address, creds)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    server.start()
    return server, port
