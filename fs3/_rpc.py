"""Internal gRPC plumbing shared by the fs3 services and client: message limits, servers, channels."""

from __future__ import annotations

import argparse
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
    # reconnect quickly after a peer restarts (defaults back off up to 120 s)
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


def make_server(max_workers: int = 32, max_receive_bytes: int = MAX_MESSAGE_BYTES) -> grpc.Server:
    """A threaded gRPC server with fs3's message limits, counting requests, latencies and bytes per method.

    ``max_receive_bytes`` caps one incoming message (gRPC refuses a bigger one before buffering it).
    """
    from ffcommon.metrics import GrpcMetricsInterceptor

    options = [o for o in OPTIONS if o[0] != "grpc.max_receive_message_length"]
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=[*options, ("grpc.max_receive_message_length", max_receive_bytes)],
        interceptors=[GrpcMetricsInterceptor()],
    )


def add_metrics_flag(ap: argparse.ArgumentParser) -> None:
    """``--metrics-port``: where the service serves Prometheus ``/metrics`` (off when unset)."""
    ap.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port (0 = any)"
    )


def start_metrics(args: argparse.Namespace, name: str) -> None:
    """Serve ``/metrics`` on ``args.host:args.metrics_port`` if the flag was given; log where."""
    if args.metrics_port is None:
        return
    from ffcommon.metrics import serve_metrics

    port = serve_metrics(args.metrics_port, host=args.host)
    logging.info("%s metrics on http://%s:%d/metrics", name, args.host, port)


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
