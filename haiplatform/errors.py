"""Exceptions of the HAI-Platform scheduler, agent and clients, mapped to and from gRPC status codes."""

from __future__ import annotations

import grpc


class HaiError(Exception):
    """Base class of every HAI-Platform error; ``code`` is the gRPC status it travels as."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN


class InvalidSpec(HaiError, ValueError):
    """A job spec or request field is invalid; the message names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(HaiError, LookupError):
    """No such job, node or user."""

    code = grpc.StatusCode.NOT_FOUND


class Unauthenticated(HaiError):
    """Missing or unknown token."""

    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(HaiError, PermissionError):
    """The caller may not act on another user's job, or needs to be an admin."""

    code = grpc.StatusCode.PERMISSION_DENIED


class InvalidState(HaiError):
    """The job is not in a state that allows the request (e.g. cancel a completed job)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class SchedulerUnavailable(HaiError, ConnectionError):
    """The scheduler (or an agent) did not answer in time."""

    code = grpc.StatusCode.UNAVAILABLE


class NotInJob(HaiError):
    """An in-job client call was made outside a job launched by an agent."""

    code = grpc.StatusCode.FAILED_PRECONDITION


_BY_CODE = {
    cls.code: cls
    for cls in (InvalidSpec, NotFound, Unauthenticated, PermissionDenied, InvalidState, SchedulerUnavailable)
}
_BY_CODE[grpc.StatusCode.DEADLINE_EXCEEDED] = SchedulerUnavailable


def from_rpc_error(err: grpc.RpcError) -> HaiError:
    """The HaiError subclass for a failed call, carrying the server's message."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    detail = err.details() if hasattr(err, "details") else str(err)
    cls = _BY_CODE.get(code, HaiError)
    return cls(f"{code.name}: {detail}")
