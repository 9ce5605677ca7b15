"""The agent's gRPC log service: ranges of a job's rank logs on this node, for ``haictl logs``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import grpc

from haiplatform.protos import agent_pb2, agent_pb2_grpc

if TYPE_CHECKING:
    from haiplatform.agent.agent import Agent

MAX_LOG_READ_BYTES = 4_000_000  # under gRPC's default 4 MiB message limit


class LogService(agent_pb2_grpc.AgentLogsServicer):
    """ReadLog: bytes of WORK_DIR/logs/job-ID/rank-R.log from an offset (negative: from the end)."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def ReadLog(self, request, context) -> agent_pb2.ReadLogReply:  # noqa: ANN001
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
