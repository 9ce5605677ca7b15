"""Fixtures of the status-page tests: a real scheduler (with --web-port) and real agents, and a
headless Chromium driven over the DevTools protocol on a pipe (no extra Python package needed)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from ffcommon.launcher import Launcher
from ffcommon.ports import free_port
from haiplatform.protos import scheduler_pb2, scheduler_pb2_grpc

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NODES = ("node-a", "node-b", "node-c")


@dataclass
class Cluster:
    """A running scheduler + agents: its gRPC address, web URL, admin token and a stub."""

    grpc_addr: str
    web_url: str
    admin_token: str
    launcher: Launcher
    work_dir: Path
    stub: scheduler_pb2_grpc.SchedulerStub
    nodes: tuple[str, ...] = NODES
    db_path: Path | None = None  # the scheduler's SQLite file
    agent_metrics: dict[str, str] = field(default_factory=dict)  # node -> its agent's /metrics URL

    def md(self, token: str | None = None) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {token if token is not None else self.admin_token}")]

    def submit(self, token: str | None = None, **spec: Any) -> int:
        spec.setdefault("workdir", str(self.work_dir))
        spec.setdefault("nodes", 1)
        return self.stub.Submit(scheduler_pb2.JobSpec(**spec), metadata=self.md(token), timeout=10).job_id

    def add_user(self, name: str) -> str:
        return self.stub.AddUser(
            scheduler_pb2.AddUserRequest(name=name), metadata=self.md(), timeout=10
        ).token

    def cancel(self, job_id: int, token: str | None = None) -> None:
        self.stub.Cancel(scheduler_pb2.JobRef(job_id=job_id), metadata=self.md(token), timeout=10)

    def job(self, job_id: int) -> scheduler_pb2.JobInfo:
        return self.stub.GetJob(scheduler_pb2.JobRef(job_id=job_id), metadata=self.md(), timeout=10)

    def wait_state(self, job_id: int, states: set[str], timeout_s: float = 30.0) -> scheduler_pb2.JobInfo:
        deadline = time.monotonic() + timeout_s
        while True:
            info = self.job(job_id)
            if info.state in states:
                return info
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is {info.state} ({info.reason}), not {states}")
            time.sleep(0.1)

    def http(
        self, path: str, method: str = "GET", token: str | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """(status, headers, body) of one request to the web server."""
        req = urllib.request.Request(
            self.web_url + path, method=method, data=b"" if method == "POST" else None
        )
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def get_json(self, path: str, token: str | None = None) -> dict[str, Any]:
        status, _, body = self.http(path, token=token)
        assert status == 200, (path, status, body)
        return json.loads(body)


@contextmanager
def running_cluster(
    base: Path, nodes: tuple[str, ...] = NODES, sched_args: tuple[str, ...] = (), agent_metrics: bool = False
) -> Iterator[Cluster]:
    """A scheduler with the status page and one agent per node, all idle when this yields."""
    lnch = Launcher(base / "logs")
    grpc_port, web_port = free_port(), free_port()
    metrics_ports = {name: free_port() for name in nodes} if agent_metrics else {}
    try:
        lnch.start_python(
            "scheduler", "haiplatform.scheduler",
            ["--port", str(grpc_port), "--db", str(base / "sched.db"), "--web-port", str(web_port),
             "--heartbeat-s", "0.3", "--node-timeout-s", "5", "--cycle-s", "0.2", "--term-s", "1",
             "--suspend-grace-s", "2", *sched_args],
            port=("127.0.0.1", web_port),
        )  # fmt: skip
        token_file = base / "admin.token"
        for name in nodes:
            extra = ["--metrics-port", str(metrics_ports[name])] if agent_metrics else []
            lnch.start_python(
                f"agent-{name}", "haiplatform.agent",
                ["--scheduler", f"127.0.0.1:{grpc_port}", "--node-name", name, "--slots", "8",
                 "--work-dir", str(base / name), "--token-file", str(token_file), *extra],
            )  # fmt: skip
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        c = Cluster(
            f"127.0.0.1:{grpc_port}", f"http://127.0.0.1:{web_port}", token_file.read_text().strip(),
            lnch, base, scheduler_pb2_grpc.SchedulerStub(channel), nodes, base / "sched.db",
            {n: f"http://127.0.0.1:{p}/metrics" for n, p in metrics_ports.items()},
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            states = {n["name"]: n["state"] for n in c.get_json("/api/nodes")["nodes"]}
            if len(states) == len(nodes) and set(states.values()) == {"idle"}:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"agents did not come up: {states}")
            time.sleep(0.1)
        yield c
        channel.close()
    except BaseException:
        for proc in lnch.procs.values():
            print(f"--- log of {proc.name} ---\n{proc.log_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        lnch.stop_all(grace_s=3)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One scheduler with the status page and three agents, shared by the web tests."""
    with running_cluster(tmp_path_factory.mktemp("web-cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def fs3_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A real fs3 cluster (mgmtd, meta, two storage servers, 2-way chains) with /metrics on each."""
    from fs3.cluster import LocalCluster, LocalClusterConfig

    cfg = LocalClusterConfig(num_storage=2, replicas=2, num_chains=2, lease_s=2.0, heartbeat_s=0.3)
    with LocalCluster(cfg, tmp_path_factory.mktemp("web-fs3")) as c:
        yield c


@pytest.fixture(scope="module")
def fs3_web(tmp_path_factory: pytest.TempPathFactory, fs3_cluster: Any) -> Iterator[Cluster]:
    """Two agents (with /metrics) and a scheduler whose page shows ``fs3_cluster`` (polled every 0.5 s)."""
    sched_args = ("--fs3-mgmtd", fs3_cluster.mgmtd_address, "--fs3-poll-s", "0.5")
    with running_cluster(
        tmp_path_factory.mktemp("web-fs3-sched"), ("gpu-1", "gpu-2"), sched_args, agent_metrics=True
    ) as c:
        yield c


# -- headless Chromium over the DevTools protocol ------------------------------------------------------
class Browser:
    """Chromium with ``--remote-debugging-pipe``: CDP JSON messages, NUL-terminated, on fds 3 and 4."""

    def __init__(self, profile_dir: Path, width: int = 1400, height: int = 780) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()
        # Move the child's ends above 3/4 so the dup2s below cannot clobber each other.
        hi_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 100)
        hi_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 100)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def child_fds() -> None:
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        argv = [
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--remote-debugging-pipe", f"--user-data-dir={profile_dir}", f"--window-size={width},{height}",
            "about:blank",
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, pass_fds=(3, 4), preexec_fn=child_fds, start_new_session=True,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(profile_dir / "chromium.log", "wb"),
        )  # fmt: skip
        os.close(hi_r)
        os.close(hi_w)
        self._next_id = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._cv = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable")
        self.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cv:
                    self._cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cv:
                    if "id" in msg:
                        self._replies[msg["id"]] = msg
                    else:
                        self.events.append(msg)
                    self._cv.notify_all()

    def call(self, method: str, session: str | None = None, timeout_s: float = 30.0, **params: Any) -> dict:
        """Send one CDP command and wait for its reply; raises on a protocol error or timeout."""
        with self._cv:
            self._next_id += 1
            msg_id = self._next_id
        msg: dict[str, Any] = {"id": msg_id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        with self._cv:
            while msg_id not in self._replies:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"chromium exited with {self.proc.returncode} during {method}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"chromium did not answer {method} in {timeout_s} s")
                self._cv.wait(min(left, 0.5))
            reply = self._replies.pop(msg_id)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def send(self, method: str, **params: Any) -> dict:
        """A command on the page's session."""
        return self.call(method, session=self.session, **params)

    def goto(self, url: str) -> None:
        self.send("Page.navigate", url=url)
        self.wait_for("document.readyState === 'complete'")

    def eval(self, expression: str) -> Any:
        """Evaluate JS in the page (promises awaited) and return its JSON value; page exceptions raise."""
        out = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in out:
            raise RuntimeError(f"{expression}: {out['exceptionDetails']}")
        return out["result"].get("value")

    def wait_for(self, expression: str, timeout_s: float = 20.0) -> Any:
        """Poll ``expression`` until it is truthy; returns its value or raises TimeoutError."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = self.eval(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f"still falsy after {timeout_s} s: {expression} (last value {value!r})")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the element matching ``selector``."""
        box = self.eval(
            f"(() => {{ const e = document.querySelector({json.dumps(selector)}); if (!e) return null;"
            " e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        if box is None:
            raise LookupError(f"no element matches {selector}")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", format="png")["data"]))

    def page_errors(self) -> list[str]:
        """Uncaught exceptions and console errors (CSP violations included) seen so far."""
        with self._cv:
            events = list(self.events)
        out = []
        for ev in events:
            if ev.get("method") == "Runtime.exceptionThrown":
                out.append(json.dumps(ev["params"]["exceptionDetails"])[:500])
            elif ev.get("method") == "Log.entryAdded" and ev["params"]["entry"]["level"] == "error":
                entry = ev["params"]["entry"]
                out.append(f"{entry['text']} ({entry.get('url', '')})")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    """A headless Chromium page; skipped when chromium is not installed."""
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    b = Browser(profile)
    try:
        yield b
    finally:
        b.close()
