"""Prometheus metrics for any gRPC server: one interceptor, added with one line, and a /metrics endpoint.

Usage (the one line)::

    server = grpc.server(pool, interceptors=[GrpcMetricsInterceptor()])

Per method it counts requests and errors (by status code), a latency histogram and the bytes of
request and reply messages (their serialized wire form, streams summed message by message).
``serve_metrics(port)`` exposes them (and the process's own metrics) at ``http://HOST:PORT/metrics``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server

# Latency buckets from 100 us (a loopback unary call) to 60 s (a long stream).
LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0,
)  # fmt: skip


class GrpcServerMetrics:
    """The metric families of the gRPC servers in one registry (created once per registry)."""

    _by_registry: dict[int, GrpcServerMetrics] = {}
    _lock = threading.Lock()

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("grpc_service", "grpc_method")
        self.requests = Counter(
            "grpc_server_handled", "RPCs completed, by status code", (*labels, "grpc_code"), registry=registry
        )
        self.errors = Counter(
            "grpc_server_errors", "RPCs that ended with a status other than OK", (*labels, "grpc_code"),
            registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "grpc_server_handling_seconds", "Time from request to final status, seconds", labels,
            buckets=LATENCY_BUCKETS_S, registry=registry,
        )  # fmt: skip
        self.received = Counter(
            "grpc_server_received_bytes", "Bytes of request messages (serialized protobuf)", labels,
            registry=registry,
        )  # fmt: skip
        self.sent = Counter(
            "grpc_server_sent_bytes",
            "Bytes of reply messages (serialized protobuf)",
            labels,
            registry=registry,
        )
        self.in_flight = Gauge("grpc_server_in_flight", "RPCs being handled now", labels, registry=registry)

    @classmethod
    def for_registry(cls, registry: CollectorRegistry) -> GrpcServerMetrics:
        """The one instance for ``registry`` (Prometheus refuses to register a family twice)."""
        with cls._lock:
            inst = cls._by_registry.get(id(registry))
            if inst is None:
                inst = cls._by_registry[id(registry)] = cls(registry)
            return inst


def _split(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    _, _, rest = full_method.partition("/")
    service, _, method = rest.partition("/")
    return service or "unknown", method or "unknown"


class GrpcMetricsInterceptor(grpc.ServerInterceptor):
    """Server interceptor recording requests, errors, latency and bytes per method."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.metrics = GrpcServerMetrics.for_registry(registry or REGISTRY)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Wrap the method's handler; unknown methods pass through (gRPC answers UNIMPLEMENTED)."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service, method = _split(handler_call_details.method)
        m = self.metrics
        labels = (service, method)

        def finish(t0: float, context: grpc.ServicerContext, exc: BaseException | None) -> None:
            code = _status_code(context, exc)
            m.latency.labels(*labels).observe(time.perf_counter() - t0)
            m.requests.labels(*labels, code).inc()
            if code != "OK":
                m.errors.labels(*labels, code).inc()
            m.in_flight.labels(*labels).dec()

        def unary_reply(behavior: Callable) -> Callable:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                t0 = time.perf_counter()
                m.in_flight.labels(*labels).inc()
                try:
                    reply = behavior(request, context)
                except BaseException as exc:
                    finish(t0, context, exc)
                    raise
                finish(t0, context, None)
                return reply

            return wrapped

        def stream_reply(behavior: Callable) -> Callable:
            def wrapped(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                t0 = time.perf_counter()
                m.in_flight.labels(*labels).inc()
                try:
                    yield from behavior(request, context)
                except BaseException as exc:
                    finish(t0, context, exc)
                    raise
                finish(t0, context, None)

            return wrapped

        # Bytes are counted on the wire form, where gRPC (de)serializes anyway: protobuf's ByteSize()
        # would cost more than the serialization itself for the data path's 1 MiB chunk messages.
        received, sent = m.received.labels(*labels), m.sent.labels(*labels)
        deserialize, serialize = handler.request_deserializer, handler.response_serializer

        def counted_deserialize(raw: bytes) -> Any:
            received.inc(len(raw))
            return deserialize(raw) if deserialize else raw

        def counted_serialize(msg: Any) -> bytes:
            raw = serialize(msg) if serialize else msg
            sent.inc(len(raw))
            return raw

        handler = handler._replace(
            request_deserializer=counted_deserialize, response_serializer=counted_serialize
        )
        if handler.unary_unary:
            return handler._replace(unary_unary=unary_reply(handler.unary_unary))
        if handler.stream_unary:
            return handler._replace(stream_unary=unary_reply(handler.stream_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=stream_reply(handler.unary_stream))
        if handler.stream_stream:
            return handler._replace(stream_stream=stream_reply(handler.stream_stream))
        return handler


def _status_code(context: grpc.ServicerContext, exc: BaseException | None) -> str:
    """The status the call ends with: what the handler set (abort/set_code), else OK or UNKNOWN."""
    code = None
    try:
        code = context.code()
    except (AttributeError, NotImplementedError):
        pass
    if isinstance(code, grpc.StatusCode):
        return code.name
    if exc is None:
        return "OK"
    if isinstance(exc, GeneratorExit):
        return "CANCELLED"
    return "UNKNOWN"


def serve_metrics(port: int, host: str = "127.0.0.1", registry: CollectorRegistry | None = None) -> int:
    """Serve ``/metrics`` for ``registry`` on ``host:port`` in a daemon thread; returns the bound port."""
    server, _thread = start_http_server(port, addr=host, registry=registry or REGISTRY)
    return int(server.server_address[1])
