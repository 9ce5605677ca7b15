"""fs3 exceptions and the mapping between them and gRPC status codes.

Servers abort with ``"<ERRNO>: <path or object>: <message>"``; the client turns that into the
matching :class:`FS3Error` subclass, which is also the builtin ``OSError`` subclass callers expect
(``FileNotFoundError`` for ENOENT, ...), with ``errno`` and ``filename`` set.
"""

from __future__ import annotations

import errno as _errno

import grpc


class FS3Error(OSError):
    """Base of every fs3 error; an ``OSError`` with ``errno``, ``strerror`` and ``filename``."""

    grpc_code = grpc.StatusCode.INTERNAL
    errno_value = _errno.EIO

    def __init__(self, filename: str = "", message: str = "") -> None:
        super().__init__(self.errno_value, message or _errno.errorcode.get(self.errno_value, ""), filename)


class NotFound(FS3Error, FileNotFoundError):
    grpc_code = grpc.StatusCode.NOT_FOUND
    errno_value = _errno.ENOENT


class AlreadyExists(FS3Error, FileExistsError):
    grpc_code = grpc.StatusCode.ALREADY_EXISTS
    errno_value = _errno.EEXIST


class NotADirectory(FS3Error, NotADirectoryError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    errno_value = _errno.ENOTDIR


class IsADirectory(FS3Error, IsADirectoryError):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    errno_value = _errno.EISDIR


class DirectoryNotEmpty(FS3Error):
    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    errno_value = _errno.ENOTEMPTY


class PermissionDenied(FS3Error, PermissionError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    errno_value = _errno.EACCES


class NotPermitted(FS3Error, PermissionError):
    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    errno_value = _errno.EPERM


class InvalidArgument(FS3Error, ValueError):
    """Bad input: a malformed path ('..', NUL, not absolute), a bad field value."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    errno_value = _errno.EINVAL


class NameTooLong(FS3Error, ValueError):
    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    errno_value = _errno.ENAMETOOLONG


class FileTooLarge(FS3Error):
    grpc_code = grpc.StatusCode.OUT_OF_RANGE
    errno_value = _errno.EFBIG


class TooManyLinks(FS3Error):
    """A rename would move a directory into its own subtree, or a symlink loop."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    errno_value = _errno.ELOOP


class ChecksumMismatchError(FS3Error):
    """Data failed its CRC32C check (in flight, at rest, or in a packed dataset/checkpoint file)."""

    grpc_code = grpc.StatusCode.DATA_LOSS
    errno_value = _errno.EIO


class StaleChainVersion(FS3Error):
    """The sender's chain version is older than the receiver's; refresh routing and retry."""

    grpc_code = grpc.StatusCode.ABORTED
    errno_value = _errno.ESTALE


class ChunkPending(FS3Error):
    """The replica holds a pending (uncommitted) version of the chunk: retry or read relaxed."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    errno_value = _errno.EAGAIN


class NotServing(FS3Error):
    """The target is not in a state that allows this request (e.g. a read on a syncing target)."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    errno_value = _errno.EAGAIN


class ClusterTimeout(FS3Error, TimeoutError):
    """A service did not answer in time (dead peer); names the service."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    errno_value = _errno.ETIMEDOUT


class NoSpace(FS3Error):
    """A storage target has no room for the chunk (its disk is full or under its reserve)."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    errno_value = _errno.ENOSPC


class IOFailure(FS3Error):
    grpc_code = grpc.StatusCode.INTERNAL
    errno_value = _errno.EIO


class NoData(FS3Error):
    """No such extended attribute (or one the caller may not see)."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    errno_value = _errno.ENODATA


class OutOfRange(FS3Error):
    """A result or name does not fit its bound (an xattr name over 255 bytes)."""

    grpc_code = grpc.StatusCode.OUT_OF_RANGE
    errno_value = _errno.ERANGE


class TooBig(FS3Error):
    """An argument over its size limit (an xattr value over 64 KiB)."""

    grpc_code = grpc.StatusCode.OUT_OF_RANGE
    errno_value = _errno.E2BIG


class NotSupported(FS3Error):
    """fs3 does not do this (an xattr namespace other than user., trusted., security.)."""

    grpc_code = grpc.StatusCode.UNIMPLEMENTED
    errno_value = _errno.EOPNOTSUPP


class PackedFormatError(FS3Error, ValueError):
    """A packed dataset or checkpoint file is malformed, truncated or used inconsistently (local only)."""

    errno_value = _errno.EINVAL

    def __init__(self, message: str, filename: str = "") -> None:
        super().__init__(filename, message)

    def __str__(self) -> str:
        return self.strerror or ""


class PackedChecksumError(ChecksumMismatchError, PackedFormatError):
    """A sample, tensor or index of a packed dataset/checkpoint fails its recorded CRC32C.

    Both a checksum mismatch and a malformed file: ``except`` either one catches it.
    """


_BY_NAME: dict[str, type[FS3Error]] = {
    "ENOENT": NotFound,
    "EEXIST": AlreadyExists,
    "ENOTDIR": NotADirectory,
    "EISDIR": IsADirectory,
    "ENOTEMPTY": DirectoryNotEmpty,
    "EACCES": PermissionDenied,
    "EPERM": NotPermitted,
    "EINVAL": InvalidArgument,
    "ENAMETOOLONG": NameTooLong,
    "EFBIG": FileTooLarge,
    "ELOOP": TooManyLinks,
    "ECHECKSUM": ChecksumMismatchError,
    "ESTALE": StaleChainVersion,
    "EPENDING": ChunkPending,
    "ENOTSERVING": NotServing,
    "ETIMEDOUT": ClusterTimeout,
    "ENOSPC": NoSpace,
    "EIO": IOFailure,
    "ENODATA": NoData,
    "ERANGE": OutOfRange,
    "E2BIG": TooBig,
    "EOPNOTSUPP": NotSupported,
}
_NAME_OF = {cls: name for name, cls in _BY_NAME.items()}


def error_name(cls: type[FS3Error]) -> str:
    """The wire name (``ENOENT``...) of an error class."""
    return _NAME_OF[cls]


_WIRE_NAME_MAX = 1024  # characters of a file name a status message carries


def wire_message(exc: FS3Error) -> str:
    """``"ENOENT: /a/b: no such file"``: the status details a server sends for ``exc``."""
    name = str(exc.filename or "")
    if len(name) > _WIRE_NAME_MAX:  # gRPC status details travel in headers (8 KiB): keep the path's tail
        name = "..." + name[-_WIRE_NAME_MAX:]
    return f"{_NAME_OF.get(type(exc), 'EIO')}: {name}: {exc.strerror}"


def abort(context: grpc.ServicerContext, exc: FS3Error) -> None:
    """Abort the current RPC with ``exc``'s status code and wire message (raises)."""
    context.abort(exc.grpc_code, wire_message(exc))


def from_wire(details: str, what: str = "") -> FS3Error:
    """The FS3Error a server's ``wire_message`` text names (IOFailure for text that names none)."""
    name, sep, rest = details.partition(": ")
    if sep and name in _BY_NAME:
        filename, _, message = rest.partition(": ")
        return _BY_NAME[name](filename, message)
    return IOFailure(what, details)


def from_rpc_error(err: grpc.RpcError, what: str = "") -> FS3Error:
    """Turn a gRPC error into the matching FS3Error; transport failures become ClusterTimeout/IOFailure."""
    code = err.code() if hasattr(err, "code") else None
    details = (err.details() if hasattr(err, "details") else "") or ""
    name, sep, rest = details.partition(": ")
    if sep and name in _BY_NAME:
        filename, _, message = rest.partition(": ")
        return _BY_NAME[name](filename, message)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return ClusterTimeout(what, f"{code.name}: {details}")
    return IOFailure(what, f"{code.name if code else 'RPC'}: {details}")
