"""Wire format of the storage data port: chunk payloads over plain TCP, beside the gRPC control plane.

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

All integers are little-endian. A malformed request closes the connection.
"""

from __future__ import annotations

import socket
import struct

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
