"""Internal gRPC plumbing shared by the fs3 services and client: message limits, servers, channels."""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures

import grpc

MAX_MESSAGE_BYTES = 80 * 1024 * 1024  # > the largest chunk (64 MiB) plus headers
PIECE_BYTES = 1024 * 1024  # chunk data moves in 1 MiB stream messages

OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.so_reuseport", 0),
]


def make_server(max_workers: int = 32) -> grpc.Server:
    """A threaded gRPC server with fs3's message limits."""
    return grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=OPTIONS)


def channel(address: str) -> grpc.Channel:
    """An insecure channel to ``address`` with fs3's message limits."""
    return grpc.insecure_channel(address, options=OPTIONS)


def serve_forever(server: grpc.Server, name: str, on_stop: object = None) -> None:
    """Block until SIGTERM/SIGINT, then stop ``server`` (and call ``on_stop``)."""
    stop = threading.Event()

    def _handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _handler)
    signal.signal(signal.SIGINT, _handler)
    server.start()
    logging.info("%s serving", name)
    stop.wait()
    if callable(on_stop):
        on_stop()
    server.stop(grace=1).wait()


def setup_logging(name: str) -> None:
    """Log lines with time, process name and level to stderr."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {name} %(levelname)s %(message)s")
