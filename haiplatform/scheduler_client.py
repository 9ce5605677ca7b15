"""Typed client of the scheduler's gRPC API (what haictl and the web status page call).

Failures raise ``haiplatform.errors`` exceptions carrying the server's message; every call has a
deadline, so a dead scheduler gives ``SchedulerUnavailable`` instead of a hang.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc

from ffcommon.config import client_config_path, load_toml
from haiplatform import errors
from haiplatform.protos import scheduler_pb2, scheduler_pb2_grpc
from haiplatform.scheduler import jobspec

PRIORITIES = jobspec.PRIORITIES
TERMINAL = ("completed", "failed", "cancelled")


def resolve_connection(scheduler: str | None = None, token: str | None = None) -> tuple[str, str, str]:
    """(address, token, tls CA path) from arguments, then HAI_SCHEDULER/HAI_TOKEN, then client.toml."""
    cfg = load_toml(client_config_path(), errors.InvalidSpec)
    address = scheduler or os.environ.get("HAI_SCHEDULER") or cfg.get("scheduler") or "127.0.0.1:7070"
    tok = token or os.environ.get("HAI_TOKEN") or cfg.get("token") or ""
    if not tok and cfg.get("token_file"):
        tok = Path(cfg["token_file"]).expanduser().read_text().strip()
    return address, tok, os.environ.get("HAI_TLS_CA") or cfg.get("tls_ca", "")


class SchedulerClient:
    """One connection to the scheduler, authenticated with a user's token."""

    def __init__(
        self, address: str, token: str, tls_ca: bytes | None = None, timeout_s: float = 10.0
    ) -> None:
        self.address = address
        if tls_ca is not None:
            self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials(tls_ca))
        else:
            self._channel = grpc.insecure_channel(address)
        self._stub = scheduler_pb2_grpc.SchedulerStub(self._channel)
        self._md = (("authorization", f"Bearer {token}"),)
        self.timeout_s = timeout_s

    @classmethod
    def from_env(cls, scheduler: str | None = None, token: str | None = None) -> SchedulerClient:
        """Connect using flags, env or ``~/.config/fireflyer/client.toml`` (see resolve_connection)."""
        address, tok, ca = resolve_connection(scheduler, token)
        return cls(address, tok, Path(ca).read_bytes() if ca else None)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def __enter__(self) -> SchedulerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any) -> Any:
        try:
            return getattr(self._stub, method)(request, metadata=self._md, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE and "agent" not in (exc.details() or ""):
                raise errors.SchedulerUnavailable(
                    f"scheduler at {self.address} unavailable: {exc.details()}"
                ) from None
            raise errors.from_rpc_error(exc) from None

    def submit(self, spec: scheduler_pb2.JobSpec | Mapping[str, Any]) -> int:
        """Queue a job; returns its id (an array's: its first task's, the array's id)."""
        return self.submit_all(spec)[0]

    def submit_all(self, spec: scheduler_pb2.JobSpec | Mapping[str, Any]) -> list[int]:
        """Queue a job or an array; returns the id of every task."""
        if not isinstance(spec, scheduler_pb2.JobSpec):
            spec = jobspec.from_fields(spec)
        reply = self._call("Submit", spec)
        return list(reply.job_ids) or [reply.job_id]

    def jobs(
        self,
        states: list[str] | None = None,
        user: str = "",
        limit: int = 0,
        since: float = 0.0,
        until: float = 0.0,
    ) -> list[scheduler_pb2.JobInfo]:
        """Jobs newest first; ``since``/``until`` bound the submission time (unix s, 0 = unbounded)."""
        request = scheduler_pb2.ListJobsRequest(
            states=states or [], user=user, limit=limit, since=since, until=until
        )
        return list(self._call("ListJobs", request).jobs)

    def job(self, job_id: int) -> scheduler_pb2.JobInfo:
        """One job with its transition history."""
        return self._call("GetJob", scheduler_pb2.JobRef(job_id=job_id))

    def cancel(self, job_id: int) -> scheduler_pb2.JobInfo:
        """Cancel a job."""
        return self._call("Cancel", scheduler_pb2.JobRef(job_id=job_id))

    def suspend(self, job_id: int) -> scheduler_pb2.JobInfo:
        """Suspend (checkpoint and hold) a job."""
        return self._call("Suspend", scheduler_pb2.JobRef(job_id=job_id))

    def resume(self, job_id: int) -> scheduler_pb2.JobInfo:
        """Requeue a suspended job."""
        return self._call("Resume", scheduler_pb2.JobRef(job_id=job_id))

    def hold(self, job_id: int) -> scheduler_pb2.JobInfo:
        """Keep a queued job from starting until released."""
        return self._call("Hold", scheduler_pb2.JobRef(job_id=job_id))

    def release(self, job_id: int) -> scheduler_pb2.JobInfo:
        """Let a held job start."""
        return self._call("Release", scheduler_pb2.JobRef(job_id=job_id))

    def requeue(self, job_id: int) -> scheduler_pb2.JobInfo:
        """Stop a running job (no checkpoint wait) or reopen an ended one, and queue it again."""
        return self._call("Requeue", scheduler_pb2.JobRef(job_id=job_id))

    def tail_log(
        self, job_id: int, rank: int = 0, offset: int = -65536, max_bytes: int = 65536
    ) -> scheduler_pb2.TailLogReply:
        """Bytes of a rank's log from ``offset`` (negative: from the end)."""
        return self._call(
            "TailLog",
            scheduler_pb2.TailLogRequest(job_id=job_id, rank=rank, offset=offset, max_bytes=max_bytes),
        )

    def follow_log(self, job_id: int, rank: int = 0, poll_s: float = 0.5) -> Iterator[bytes]:
        """Yield a rank's log as it grows until the job is done."""
        import time

        offset = 0
        while True:
            out = self.tail_log(job_id, rank, offset)
            if out.data:
                yield out.data
                offset = out.next_offset
                continue
            if out.job_done:
                return
            time.sleep(poll_s)

    def nodes(self) -> list[scheduler_pb2.NodeInfo]:
        """Every node the scheduler knows."""
        return list(self._call("ListNodes", scheduler_pb2.ListNodesRequest()).nodes)

    def drain(self, node: str, reason: str = "") -> scheduler_pb2.NodeInfo:
        """Stop placing new jobs on a node (admin)."""
        return self._call("Drain", scheduler_pb2.NodeRef(name=node, reason=reason))

    def undrain(self, node: str) -> scheduler_pb2.NodeInfo:
        """Let a drained node take jobs again (admin)."""
        return self._call("Undrain", scheduler_pb2.NodeRef(name=node))

    def set_quota(
        self, scope: str, name: str, max_nodes: int, priority: str | int = 0
    ) -> list[scheduler_pb2.Quota]:
        """Set (or with max_nodes < 0 remove) a node quota (admin)."""
        prio = PRIORITIES.get(str(priority).upper(), priority) if priority else 0
        q = scheduler_pb2.Quota(scope=scope, name=name, priority=int(prio), max_nodes=max_nodes)
        return list(self._call("SetQuota", q).quotas)

    def quotas(self) -> list[scheduler_pb2.Quota]:
        """Every quota."""
        return list(self._call("ListQuotas", scheduler_pb2.Empty()).quotas)

    def add_user(self, name: str, group: str = "", admin: bool = False) -> str:
        """Create a user (admin); returns the new token."""
        return self._call("AddUser", scheduler_pb2.AddUserRequest(name=name, group=group, admin=admin)).token

    def whoami(self) -> scheduler_pb2.WhoAmIReply:
        """The caller's user name, group and admin flag."""
        return self._call("WhoAmI", scheduler_pb2.Empty())

    def wait(
        self, job_id: int, states: tuple[str, ...] = TERMINAL, timeout_s: float = 60.0
    ) -> scheduler_pb2.JobInfo:
        """Poll until the job reaches one of ``states``; TimeoutError names the state it is stuck in."""
        import time

        deadline = time.monotonic() + timeout_s
        while True:
            info = self.job(job_id)
            if info.state in states:
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"job {job_id} still {info.state} ({info.reason}) after {timeout_s} s, wanted {states}"
                )
            time.sleep(0.1)
