"""The scheduler's web status page and JSON API, served from inside the scheduler process.

It reads the scheduler's own objects (``SchedulerCore``: its lock, node table and store), so the
page and ``haictl`` always agree. Reads may be anonymous when the operator allows it; every action
(cancel, suspend, resume) and every log read needs ``Authorization: Bearer <token>`` and goes through
the same ``SchedulerCore`` methods, hence the same permission rules, as the gRPC API.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from haiplatform import errors
from haiplatform.protos import agent_pb2, agent_pb2_grpc
from haiplatform.scheduler.core import SchedulerCore
from haiplatform.scheduler.store import Store, User
from haiplatform.web.fs3panel import Fs3Monitor
from haiplatform.web.metrics import SchedulerCollector
from haiplatform.web.openapi import openapi_document
from haiplatform.web.utilization import UtilizationHistory
from haiplatform.web.views import JOB_STATES, NODE_STATES, job_json, node_state, slots_used

log = logging.getLogger("haiplatform.web")

_STATIC = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
# The page loads only its own files: no inline script, nothing from elsewhere.
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_HTTP_CODE = {
    errors.InvalidSpec: HTTPStatus.BAD_REQUEST,
    errors.Unauthenticated: HTTPStatus.UNAUTHORIZED,
    errors.PermissionDenied: HTTPStatus.FORBIDDEN,
    errors.NotFound: HTTPStatus.NOT_FOUND,
    errors.InvalidState: HTTPStatus.CONFLICT,
    errors.SchedulerUnavailable: HTTPStatus.SERVICE_UNAVAILABLE,
}
_MAX_LOG_BYTES = 1 << 20
_MAX_PAGE = 1000  # jobs per /api/jobs page
_MAX_FILTER_CHARS = 256  # a user or name filter longer than any name the scheduler accepts


@dataclass
class WebConfig:
    """Knobs of the status page (defaults suit an operator's dashboard)."""

    anonymous_read: bool = True  # False: every API read needs a valid token too
    poll_ms: int = 1500  # how often the page refreshes itself
    sample_s: float = 2.0  # utilization sampling interval
    keep_samples: int = 3600  # utilization history length (2 h at 2 s)
    log_tail_bytes: int = 8192  # default tail per rank on the job page
    page_size: int = 50  # jobs per page of the job table
    fs3_mgmtd: str = ""  # mgmtd address of the fs3 cluster the fs3 panel shows ("" = no panel)
    fs3_poll_s: float = 5.0  # how often the fs3 panel is refreshed from mgmtd and storage


class ApiError(Exception):
    """An HTTP error with a JSON body ``{"error": message}``."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def _int_param(query: dict[str, list[str]], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name, [""])[-1]
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{name}: must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(HTTPStatus.BAD_REQUEST, f"{name}: must be between {lo} and {hi}, got {value}")
    return value


def _str_param(query: dict[str, list[str]], name: str) -> str:
    value = query.get(name, [""])[-1]
    if len(value) > _MAX_FILTER_CHARS:
        raise ApiError(
            HTTPStatus.BAD_REQUEST, f"{name}: at most {_MAX_FILTER_CHARS} characters, got {len(value)}"
        )
    return value


Route = tuple[str, str, str, Callable[..., Any]]


class WebServer:
    """HTTP server for the page, ``/api/*`` and ``/metrics``; runs in daemon threads."""

    def __init__(
        self,
        core: SchedulerCore,
        host: str = "127.0.0.1",
        port: int = 0,
        config: WebConfig | None = None,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.core = core
        self.config = config or WebConfig()
        self.history = UtilizationHistory(core, self.config.sample_s, self.config.keep_samples)
        self.registry = registry or REGISTRY
        self.request_counts: dict[tuple[str, str, int], int] = {}
        self._counts_lock = threading.Lock()
        self.fs3 = (
            Fs3Monitor(self.config.fs3_mgmtd, self.config.fs3_poll_s) if self.config.fs3_mgmtd else None
        )
        self.collector = SchedulerCollector(core, self._request_counts)
        self.registry.register(self.collector)
        self._log_channels: dict[str, grpc.Channel] = {}
        self._reader: Store | None = None  # opened on the first job-list request
        self._reader_lock = threading.Lock()
        # (method, name for /metrics, path pattern, handler); the names are the OpenAPI paths.
        self._routes: list[Route] = [
            ("GET", "/", r"/", self._index),
            ("GET", "/static/{name}", r"/static/(?P<name>[a-z.]+)", self._static),
            ("GET", "/healthz", r"/healthz", lambda req: {"ok": True}),
            ("GET", "/metrics", r"/metrics", self._metrics),
            ("GET", "/api/openapi.json", r"/api/openapi\.json", lambda req: openapi_document()),
            ("GET", "/api/config", r"/api/config", self._api_config),
            ("GET", "/api/whoami", r"/api/whoami", self._api_whoami),
            ("GET", "/api/nodes", r"/api/nodes", self._api_nodes),
            ("GET", "/api/jobs", r"/api/jobs", self._api_jobs),
            ("GET", "/api/jobs/{job_id}", r"/api/jobs/(?P<job_id>\d+)", self._api_job),
            ("GET", "/api/jobs/{job_id}/logs", r"/api/jobs/(?P<job_id>\d+)/logs", self._api_logs),
            ("GET", "/api/utilization", r"/api/utilization", self._api_utilization),
            ("GET", "/api/fs3", r"/api/fs3", self._api_fs3),
            (
                "POST",
                "/api/jobs/{job_id}/{action}",
                r"/api/jobs/(?P<job_id>\d+)/(?P<action>cancel|suspend|resume)",
                self._api_act,
            ),
        ]
        self._httpd = ThreadingHTTPServer((host, port), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="web-http", daemon=True)

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return int(self._httpd.server_address[1])

    def start(self) -> int:
        """Start sampling and serving; returns the port."""
        self.history.start()
        if self.fs3 is not None:
            self.fs3.start()
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop serving and sampling; unregister the metrics collector."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self.history.stop()
        if self.fs3 is not None:
            self.fs3.stop()
        for ch in self._log_channels.values():
            ch.close()
        with self._reader_lock:
            if self._reader is not None:
                self._reader.close()
                self._reader = None
        try:
            self.registry.unregister(self.collector)
        except KeyError:
            pass

    # -- dispatch -----------------------------------------------------------------------------
    def route(self, method: str, path: str) -> tuple[Callable[..., Any], dict[str, str], str]:
        """The handler, path parameters and route name for a request; raises ApiError 404/405."""
        allowed = []
        for m, name, pattern, fn in self._routes:
            match = re.fullmatch(pattern, path)
            if match:
                if m == method:
                    return fn, match.groupdict(), name
                allowed.append(m)
        if allowed:
            raise ApiError(HTTPStatus.METHOD_NOT_ALLOWED, f"{method} {path}: use {', '.join(allowed)}")
        raise ApiError(HTTPStatus.NOT_FOUND, f"{path}: no such page or API route")

    def count_request(self, route: str, method: str, status: int) -> None:
        """Count one HTTP request for ``/metrics``."""
        with self._counts_lock:
            key = (route, method, status)
            self.request_counts[key] = self.request_counts.get(key, 0) + 1

    def _request_counts(self) -> dict[tuple[str, str, int], int]:
        with self._counts_lock:
            return dict(self.request_counts)

    def _user(self, req: _Request, required: bool) -> User | None:
        """The caller (token checked), or None for an anonymous read the operator allows."""
        if not req.token and not required and self.config.anonymous_read:
            return None
        return self.core.authenticate(req.token)

    # -- pages ------------------------------------------------------------------------------------
    def _index(self, req: _Request) -> tuple[bytes, str]:
        return self._static(req, "index.html")

    def _static(self, req: _Request, name: str) -> tuple[bytes, str]:
        if name not in _STATIC:
            raise ApiError(HTTPStatus.NOT_FOUND, f"/static/{name}: no such file")
        data = resources.files("haiplatform.web").joinpath("static", name).read_bytes()
        return data, _STATIC[name]

    def _metrics(self, req: _Request) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- API --------------------------------------------------------------------------------------
    def _api_config(self, req: _Request) -> dict[str, Any]:
        return {
            "anonymous_read": self.config.anonymous_read,
            "poll_ms": self.config.poll_ms,
            "log_tail_bytes": self.config.log_tail_bytes,
            "page_size": self.config.page_size,
            "fs3": bool(self.config.fs3_mgmtd),
        }

    def _api_whoami(self, req: _Request) -> dict[str, Any]:
        user = self._user(req, required=True)
        assert user is not None
        return {"user": user.name, "group": user.group, "admin": user.admin}

    def _api_nodes(self, req: _Request) -> dict[str, Any]:
        self._user(req, required=False)
        with self.core.lock:
            on = self.core.jobs_on_nodes()
            used = slots_used(self.core.jobs)
            names = {j.job_id: j.name for j in self.core.jobs.values()}
            nodes = [
                {
                    "name": n.name,
                    "state": node_state(n, on.get(n.name, [])),
                    "slots": n.slots,
                    "slots_used": used.get(n.name, 0),
                    "reason": n.reason if n.seen else "waiting for heartbeat",
                    "last_heartbeat": n.last_heartbeat,
                    "jobs": [{"id": j, "name": names.get(j, "")} for j in on.get(n.name, [])],
                }
                for n in sorted(self.core.nodes.values(), key=lambda n: n.name)
            ]
        counts = {s: 0 for s in NODE_STATES}
        for n in nodes:
            counts[n["state"]] += 1
        slots = {
            "total": sum(n["slots"] for n in nodes if n["state"] not in ("down", "unhealthy")),
            "used": sum(n["slots_used"] for n in nodes),
        }
        return {"now": time.time(), "nodes": nodes, "counts": counts, "slots": slots}

    def _api_jobs(self, req: _Request) -> dict[str, Any]:
        """One page of jobs (newest first) matching the filters, how many match, and per-state counts."""
        self._user(req, required=False)
        states = [s for s in ",".join(req.query.get("state", [])).split(",") if s]
        for s in states:
            if s not in JOB_STATES:
                raise ApiError(
                    HTTPStatus.BAD_REQUEST, f"state: unknown state {s!r} (one of {', '.join(JOB_STATES)})"
                )
        limit = _int_param(req.query, "limit", self.config.page_size, 1, _MAX_PAGE)
        offset = _int_param(req.query, "offset", 0, 0, 1 << 40)
        user = _str_param(req.query, "user")
        name = _str_param(req.query, "name")
        with self._reader_lock:  # our own connection: a count over many jobs never holds up the scheduler
            if self._reader is None:
                self._reader = self.core.store.reader()
            jobs = self._reader.list_jobs(states, user, limit, name=name, offset=offset)
            by_state = self._reader.count_jobs(user, name)
        counts = {s: by_state.get(s, 0) for s in JOB_STATES}
        total = sum(n for s, n in counts.items() if not states or s in states)
        now = time.time()
        for j in jobs:
            j.pending_reason = self.core.pending_reason(self.core.jobs.get(j.job_id) or j, now)
        return {
            "now": now,
            "jobs": [job_json(j, now) for j in jobs],
            "offset": offset,
            "limit": limit,
            "total": total,
            "counts": counts,
        }

    def _api_job(self, req: _Request, job_id: str) -> dict[str, Any]:
        user = self._user(req, required=False)
        job, history = self.core.get_job(user, int(job_id))  # type: ignore[arg-type]
        now = time.time()
        out = job_json(job, now)
        out["history"] = [
            {"at": t.at, "from_state": t.from_state, "to_state": t.to_state, "reason": t.reason}
            for t in history
        ]
        return {"now": now, "job": out}

    def _api_logs(self, req: _Request, job_id: str) -> dict[str, Any]:
        user = self._user(req, required=True)
        assert user is not None
        jid = int(job_id)
        rank = _int_param(req.query, "rank", 0, 0, 1 << 30)
        offset = _int_param(req.query, "offset", -self.config.log_tail_bytes, -(1 << 40), 1 << 40)
        max_bytes = _int_param(req.query, "max_bytes", self.config.log_tail_bytes, 1, _MAX_LOG_BYTES)
        node, done = self.core.log_location(user, jid, rank)
        channel = self._log_channels.get(node.log_address)
        if channel is None:
            channel = self._log_channels[node.log_address] = grpc.insecure_channel(node.log_address)
        try:
            out = agent_pb2_grpc.AgentLogsStub(channel).ReadLog(
                agent_pb2.ReadLogRequest(job_id=jid, rank=rank, offset=offset, max_bytes=max_bytes), timeout=5
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise errors.NotFound(exc.details()) from None
            raise errors.SchedulerUnavailable(
                f"agent of node {node.name} ({node.log_address}) holding rank {rank}'s log: {exc.code().name}"
            ) from None
        return {
            "job_id": jid,
            "rank": rank,
            "node": node.name,
            "start_offset": out.next_offset - len(out.data),
            "next_offset": out.next_offset,
            "job_done": done,
            "text": out.data.decode("utf-8", errors="replace"),
        }

    def _api_utilization(self, req: _Request) -> dict[str, Any]:
        self._user(req, required=False)
        window_s = _int_param(req.query, "window_s", 900, 1, 7 * 86400)
        now = time.time()
        return {
            "now": now,
            "interval_s": self.history.interval_s,
            "samples": [s.to_json() for s in self.history.since(now - window_s)],
        }

    def _api_fs3(self, req: _Request) -> dict[str, Any]:
        self._user(req, required=False)
        if self.fs3 is None:
            return {"configured": False}
        return {"configured": True, **self.fs3.snapshot()}

    def _api_act(self, req: _Request, job_id: str, action: str) -> dict[str, Any]:
        user = self._user(req, required=True)
        act = {"cancel": self.core.cancel, "suspend": self.core.suspend, "resume": self.core.resume}[action]
        job = act(user, int(job_id))  # type: ignore[arg-type]
        return {"now": time.time(), "job": job_json(job, time.time())}


@dataclass
class _Request:
    method: str
    path: str
    query: dict[str, list[str]]
    token: str


def _make_handler(web: WebServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "haiplatform-web"
        sys_version = ""

        def do_GET(self) -> None:  # http.server's naming
            self._handle("GET")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(min(length, 1 << 16))
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

        def _handle(self, method: str) -> None:
            url = urlsplit(self.path)
            auth = self.headers.get("Authorization", "")
            token = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
            req = _Request(method, url.path, parse_qs(url.query), token)
            pattern = "unmatched"
            try:
                fn, params, pattern = web.route(method, url.path)
                result = fn(req, **params)
            except ApiError as exc:
                self._json(exc.status, {"error": str(exc)}, pattern, method)
                return
            except errors.HaiError as exc:
                status = _HTTP_CODE.get(type(exc), HTTPStatus.INTERNAL_SERVER_ERROR)
                self._json(status, {"error": str(exc)}, pattern, method)
                return
            except Exception as exc:  # the page shows it; the traceback goes to the log
                log.exception("web: %s %s failed", method, url.path)
                self._json(
                    HTTPStatus.INTERNAL_SERVER_ERROR,
                    {"error": f"{type(exc).__name__}: {exc}"},
                    pattern,
                    method,
                )
                return
            if isinstance(result, tuple):
                body, ctype = result
                self._send(HTTPStatus.OK, body, ctype, pattern, method)
            else:
                self._json(HTTPStatus.OK, result, pattern, method)

        def _json(self, status: HTTPStatus, obj: Any, pattern: str, method: str) -> None:
            body = json.dumps(obj, separators=(",", ":")).encode()
            self._send(status, body, "application/json", pattern, method)

        def _send(self, status: HTTPStatus, body: bytes, ctype: str, pattern: str, method: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("Content-Security-Policy", _CSP)
            if status == HTTPStatus.UNAUTHORIZED:
                self.send_header("WWW-Authenticate", 'Bearer realm="haiplatform"')
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            web.count_request(pattern, method, int(status))

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("web %s - " + format, self.address_string(), *args)

    return Handler
