"""Every hand-framed message of fs3, for client and server alike.

Two kinds: the storage data port's frames (below), and the chunk-carrying gRPC messages that are
split or decoded by hand: ``update_pieces`` (an ``Update`` stream), ``reply_pieces`` (the data of a
``Read``/``BatchRead`` reply) and ``parse_read_rsp``/``parse_batch_read_rsp`` (their decoding
without copying the payload).

The data port: chunk payloads over plain TCP, beside the gRPC control plane.

3FS moves chunk payloads with RDMA and keeps RPCs for control. fs3's analogue: gRPC Python costs
milliseconds of CPU per MiB on each end (protobuf framing, HTTP/2, the completion queue), so reads
move over a framed TCP stream whose payload goes from the chunk file to ``recv_into`` of the caller's
buffer, and writes (client to head, and down the chain) skip HTTP/2 framing the same way. Every
check of ``Storage/Read`` and ``Storage/Update`` still applies (the server runs the same code); a
read's answer also carries the CRC32C of the bytes sent, so the client can verify end to end.

A connection carries requests one after another, each starting with a 16-byte header (magic "F3DR",
version, op, count). A READ (count = items) is followed by::

    n x ReadItem (48 B) target, inode, chunk index, offset, length (0: to the chunk's end),
                        chain version (0: not checked), flags (bit 0: relaxed read)

and answered in item order, each item with::

    ItemHeader (32 B)   item number, status, committed version, chunk length, data length,
                        CRC32C of the data, error length
    error (UTF-8)       status ERROR only: the same ``"ENAME: what: why"`` text as a gRPC status
    data                status DATA only: ``data length`` bytes of the chunk from ``offset``

An UPDATE (count = 1) is followed by an UpdateHead (8 B: header length, payload length), the
``UpdateReq`` protobuf (its ``data`` empty) and the payload, and answered with a Reply (8 B: status,
body length) and the body: a serialized ``UpdateRsp`` (status DATA) or the error text (ERROR).

All integers are little-endian. A malformed update (a length over its limit, a header that is not
an ``UpdateReq``) is answered with an EINVAL error, then the connection is closed; any other
malformed frame closes the connection at once (there is no frame to answer it in).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

from fs3 import errors
from fs3._rpc import PIECE_BYTES
from fs3.protos import storage_pb2

MAGIC = b"F3DR"
VERSION = 1
MAX_ITEMS = 1024  # items per request
MAX_ERROR_BYTES = 4096  # longest error text an item may carry
MAX_UPDATE_HEADER_BYTES = 64 << 10  # a serialized UpdateReq without its data
MAX_PAYLOAD_BYTES = 64 << 20  # the largest chunk

OP_READ = 0
OP_UPDATE = 1

BATCH_HEADER = struct.Struct("<4sHHI4x")  # magic, version, op, count
READ_ITEM = struct.Struct("<QQQIIQI4x")  # target, inode, index, offset, length, chain_version, flags
# item, status, committed_version, chunk_length, data_len, crc, err_len
ITEM_HEADER = struct.Struct("<IIQIIII")
UPDATE_HEAD = struct.Struct("<II")  # header length, payload length
REPLY = struct.Struct("<II")  # status, body length

FLAG_RELAXED = 1

STATUS_DATA = 0  # ``data length`` bytes follow
STATUS_HOLE = 1  # no committed version of the chunk: reads as zeros
STATUS_ERROR = 2  # ``error length`` bytes of error text follow

assert BATCH_HEADER.size == 16 and READ_ITEM.size == 48 and ITEM_HEADER.size == 32


class ProtocolError(ConnectionError):
    """The peer sent something that is not a data-port frame; the connection cannot be trusted."""


def recv_exact(sock: socket.socket, buf: memoryview) -> None:
    """Fill ``buf`` from ``sock``; ConnectionError if the peer closes first, TimeoutError if it stalls.

    On a blocking socket (see ``set_io_timeout``) MSG_WAITALL makes a whole chunk one system call
    with the GIL released throughout, instead of one per socket-buffer's worth: with many reader
    threads, each re-acquisition of the GIL is a wait.
    """
    got, n = 0, len(buf)
    while got < n:
        try:
            k = sock.recv_into(buf[got:], n - got, socket.MSG_WAITALL)
        except BlockingIOError:  # SO_RCVTIMEO expired with nothing received
            raise TimeoutError(f"data port peer sent nothing for {_timeout_s(sock):.0f} s") from None
        if k == 0:
            raise ConnectionError("data port peer closed the connection")
        got += k


def recv_growing(sock: socket.socket, n: int, first_bytes: int = 64 << 10) -> bytearray:
    """``n`` bytes from ``sock`` into a buffer that doubles as they arrive, from ``first_bytes``.

    A header's length claim costs nothing until the bytes come: a peer that stalls after announcing
    64 MiB holds ``first_bytes``, not 64 MiB. Errors as :func:`recv_exact`.
    """
    buf = bytearray(min(n, first_bytes))
    got = 0
    while True:
        with memoryview(buf) as mv:
            recv_exact(sock, mv[got:])
        got = len(buf)
        if got >= n:
            return buf
        buf.extend(bytes(min(got, n - got)))


def set_io_timeout(sock: socket.socket, timeout_s: float) -> None:
    """Make ``sock`` blocking with kernel send/receive timeouts (SO_SNDTIMEO/SO_RCVTIMEO) of ``timeout_s``."""
    sock.settimeout(None)
    tv = struct.pack("ll", int(timeout_s), int((timeout_s % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)


def _timeout_s(sock: socket.socket) -> float:
    sec, usec = struct.unpack("ll", sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, 16))
    return sec + usec / 1e6


def send_all(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """Send every buffer of ``parts`` in order, with as few system calls as the kernel allows."""
    views = [memoryview(p).cast("B") for p in parts if len(p)]
    while views:
        try:
            sent = sock.sendmsg(views)
        except BlockingIOError:  # SO_SNDTIMEO expired: the peer stopped reading
            raise TimeoutError("data port peer stopped reading") from None
        while views and sent >= len(views[0]):
            sent -= len(views[0])
            views.pop(0)
        if sent:
            views[0] = views[0][sent:]


# ---- chunk-carrying gRPC messages ----------------------------------------------------------------
def update_pieces(
    first: storage_pb2.UpdateReq, data: bytes | bytearray | memoryview
) -> Iterator[storage_pb2.UpdateReq]:
    """The messages of one Update stream: a header with the first piece, then data pieces."""
    mv = memoryview(data)
    first.data = bytes(mv[:PIECE_BYTES])
    yield first
    for off in range(PIECE_BYTES, len(data), PIECE_BYTES):
        yield storage_pb2.UpdateReq(data=bytes(mv[off : off + PIECE_BYTES]))


def reply_pieces(content: bytes | memoryview, offset: int, length: int) -> Iterator[bytes | memoryview]:
    """The data of one Read/BatchRead reply, ``length`` bytes at ``offset`` (0: to the end), a piece per message.

    Always yields a first piece (maybe empty); a whole chunk that fits one piece goes uncopied.
    """
    end = len(content) if length == 0 else min(len(content), offset + length)
    mv = memoryview(content)[offset : max(offset, end)]
    whole = offset == 0 and end == len(content) <= PIECE_BYTES
    yield content if whole else bytes(mv[:PIECE_BYTES])
    for off in range(PIECE_BYTES, len(mv), PIECE_BYTES):
        yield bytes(mv[off : off + PIECE_BYTES])


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7


def _wire_fields(raw: bytes, what: str) -> Iterator[tuple[int, int | memoryview]]:
    """(field number, value) of a serialized message of varint and length-delimited fields only.

    Length-delimited values are views into ``raw``, so a 1 MiB chunk payload is never copied.
    """
    mv = memoryview(raw)
    i = 0
    while i < len(mv):
        key, i = _varint(mv, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(mv, i)
            yield field, value
        elif wire == 2:
            n, i = _varint(mv, i)
            yield field, mv[i : i + n]
            i += n
        else:
            raise errors.IOFailure("storage reply", f"unexpected wire type {wire} in {what} field {field}")


def parse_read_rsp(raw: bytes) -> tuple[bool, memoryview]:
    """(found, data) of a serialized ``ReadRsp``, the data a view into ``raw``.

    Parsing with protobuf copies a 1 MiB payload twice (into the message, then out of it as ``bytes``);
    the chunk read path is copy-bound on the client, so it decodes the fields itself.
    """
    found, data = False, memoryview(b"")
    for number, value in _wire_fields(raw, "ReadRsp"):
        if number == 1:
            found = bool(value)
        elif number == 4:
            data = value  # type: ignore[assignment]
    return found, data


def parse_batch_read_rsp(raw: bytes) -> tuple[int, bool, int, memoryview, str]:
    """(item, found, chunk_length, data, error) of a serialized ``BatchReadRsp``, the data a view into ``raw``.

    Same reason as :func:`parse_read_rsp`: decoding by hand keeps the 1 MiB payload uncopied.
    """
    item = chunk_length = 0
    found, data, error = False, memoryview(b""), ""
    for number, value in _wire_fields(raw, "BatchReadRsp"):
        if number == 1:
            item = value  # type: ignore[assignment]
        elif number == 2:
            found = bool(value)
        elif number == 4:
            chunk_length = value  # type: ignore[assignment]
        elif number == 5:
            data = value  # type: ignore[assignment]
        elif number == 6:
            error = bytes(value).decode("utf-8", "replace")  # type: ignore[arg-type]
    return item, found, chunk_length, data, error
