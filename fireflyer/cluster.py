"""A whole Fire-Flyer cluster from one config: the argv of every role, and ``haictl up/down/status``.

``service_argv`` is the single mapping from the cluster TOML to each service's own flags: operators'
``haictl serve ROLE`` (systemd units, Kubernetes pods) and ``haictl up`` (all roles on one machine)
both go through it. ``up`` writes the resolved config and a state file under the cluster's data
directory, so ``down`` and ``status`` work from any later shell.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from fireflyer.config import ROLES, ClusterAgent, ClusterConfig, ServiceEndpoint, StorageServerConfig
from fireflyer.errors import FireflyerError
from fireflyer.launcher import Launcher, free_port

STATE_FILE = "cluster.json"
CLIENT_CONFIG = Path("~/.config/fireflyer/client.toml")


def _db_url(cfg: ClusterConfig) -> str:
    """mgmtd and meta share one store (3FS keeps both in FoundationDB)."""
    if cfg.meta.database == "sqlite":
        return f"sqlite:///{cfg.data_dir / 'fs3' / 'fs3.db'}"
    return cfg.meta.database


def admin_token_file(cfg: ClusterConfig) -> Path:
    """Where the scheduler bootstraps the admin token (mode 0600) and agents read it."""
    return cfg.data_dir / "scheduler" / "admin.token"


def _agent(cfg: ClusterConfig, name: str) -> ClusterAgent:
    for agent in cfg.agents:
        if agent.name == name:
            return agent
    return ClusterAgent(name=name, host=cfg.agents[0].host if cfg.agents else "127.0.0.1")


def _metrics(ep: ServiceEndpoint) -> list[str]:
    return ["--metrics-port", str(ep.metrics_port)] if ep.metrics_port else []


def service_argv(
    cfg: ClusterConfig, role: str, index: int = 0, name: str = "", mountpoint: str = ""
) -> list[str]:
    """The command line that runs ``role`` of ``cfg`` (``index``: storage server; ``name``: agent)."""
    py = [sys.executable, "-m"]
    mgmtd = cfg.mgmtd.address
    if role == "mgmtd":
        return [*py, "fs3.mgmtd", "--host", cfg.mgmtd.host, "--port", str(cfg.mgmtd.port), "--db", _db_url(cfg),
                "--lease-s", str(cfg.mgmtd.lease_s), *_metrics(cfg.mgmtd)]  # fmt: skip
    if role == "meta":
        return [*py, "fs3.meta", "--host", cfg.meta.host, "--port", str(cfg.meta.port), "--db", _db_url(cfg),
                "--mgmtd", mgmtd, *_metrics(cfg.meta)]  # fmt: skip
    if role == "storage":
        if not 0 <= index < len(cfg.storage.servers):
            raise FireflyerError(
                f"storage index {index}: the config has servers 0..{len(cfg.storage.servers) - 1}"
            )
        srv = cfg.storage.servers[index]
        return [*py, "fs3.storage", "--host", srv.host, "--port", str(srv.port), "--node-id", str(10001 + index),
                "--data-dir", str(cfg.data_dir / f"storage-{index}"), "--mgmtd", mgmtd, *_metrics(srv),
                "--data-port", str(srv.data_port)]  # fmt: skip
    if role == "scheduler":
        sc = cfg.scheduler
        argv = [*py, "haiplatform.scheduler", "--host", sc.host, "--port", str(sc.port),
                "--suspend-grace-s", str(sc.suspend_grace_s), "--web-port", str(sc.web_port),
                "--admin-token-file", str(admin_token_file(cfg)), "--fs3-mgmtd", mgmtd]  # fmt: skip
        if sc.database == "sqlite":
            return [*argv, "--db", str(cfg.data_dir / "scheduler" / "sched.db")]
        return [*argv, "--postgres", sc.database]
    if role == "agent":
        agent = _agent(cfg, name or cfg.agents[0].name)
        return [*py, "haiplatform.agent", "--scheduler", cfg.scheduler.address, "--node-name", agent.name,
                "--slots", str(agent.slots), "--host", agent.host, "--work-dir", str(cfg.data_dir / "agents" / agent.name),
                "--token-file", str(admin_token_file(cfg))]  # fmt: skip
    if role == "fuse":
        if not mountpoint:
            raise FireflyerError("fuse: a mountpoint is required")
        return [*py, "fs3.fuse", "--mgmtd", mgmtd, mountpoint]
    raise FireflyerError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def chain_table_for(cfg: ClusterConfig) -> Any:
    """The chain table ``cfg`` describes (uploaded once, when mgmtd has none)."""
    from fs3.cluster import chain_table_request

    return chain_table_request(len(cfg.storage.servers), cfg.storage.replicas, cfg.storage.chunk_size_bytes)


def resolve_ports(cfg: ClusterConfig) -> ClusterConfig:
    """A copy of ``cfg`` with every port 0 replaced by a port free now (single-machine clusters)."""

    def free(host: str, where: str) -> int:
        try:
            return free_port(host)
        except OSError as exc:
            raise FireflyerError(
                f"{where} is 0 (a free port), but {host} is not an address of this machine ({exc.strerror}): "
                "give it a fixed port"
            ) from None

    def fix(ep: Any, where: str) -> Any:
        ep = replace(ep, port=ep.port or free(ep.host, f"{where}.port"))
        if hasattr(ep, "metrics_port"):
            ep = replace(ep, metrics_port=ep.metrics_port or free(ep.host, f"{where}.metrics_port"))
        if isinstance(ep, StorageServerConfig) and not ep.data_port:
            # on this machine, fixed now like the rest: the server's own bind of port 0 could take a
            # port chosen here for a service that starts after it. Elsewhere 0 stays 0: that host's
            # server binds a free port and advertises it through mgmtd.
            try:
                ep = replace(ep, data_port=free_port(ep.host))
            except OSError:
                pass
        return ep

    sched = fix(cfg.scheduler, "scheduler")
    if not sched.web_port:
        sched = replace(sched, web_port=free(sched.host, "scheduler.web_port"))
    servers = [fix(s, f"storage.servers[{i}]") for i, s in enumerate(cfg.storage.servers)]
    return replace(
        cfg,
        mgmtd=fix(cfg.mgmtd, "mgmtd"),
        meta=fix(cfg.meta, "meta"),
        storage=replace(cfg.storage, servers=servers),
        scheduler=sched,
    )


def dump_config(cfg: ClusterConfig) -> str:
    """``cfg`` as cluster TOML (the inverse of ``fireflyer.config.parse_config``)."""

    def q(s: str) -> str:
        return json.dumps(s)

    def ep(e: ServiceEndpoint) -> str:
        data = f", data_port = {e.data_port}" if isinstance(e, StorageServerConfig) else ""
        return f"{{ host = {q(e.host)}, port = {e.port}, metrics_port = {e.metrics_port}{data} }}"

    lines = [
        "[cluster]", f"name = {q(cfg.name)}", f"data_dir = {q(str(cfg.data_dir))}", "",
        "[mgmtd]", f"host = {q(cfg.mgmtd.host)}", f"port = {cfg.mgmtd.port}", f"metrics_port = {cfg.mgmtd.metrics_port}", f"lease_s = {cfg.mgmtd.lease_s}", "",
        "[meta]", f"host = {q(cfg.meta.host)}", f"port = {cfg.meta.port}", f"metrics_port = {cfg.meta.metrics_port}", f"database = {q(cfg.meta.database)}", "",
        "[storage]", f"replicas = {cfg.storage.replicas}", f"chunk_size_bytes = {cfg.storage.chunk_size_bytes}",
        "servers = [" + ", ".join(ep(s) for s in cfg.storage.servers) + "]", "",
        "[scheduler]", f"host = {q(cfg.scheduler.host)}", f"port = {cfg.scheduler.port}",
        f"web_port = {cfg.scheduler.web_port}", f"database = {q(cfg.scheduler.database)}",
        f"suspend_grace_s = {cfg.scheduler.suspend_grace_s}", "",
    ]  # fmt: skip
    for a in cfg.agents:
        lines += ["[[agents]]", f"name = {q(a.name)}", f"host = {q(a.host)}", f"slots = {a.slots}", ""]
    return "\n".join(lines)


def write_client_config(cfg: ClusterConfig, path: Path = CLIENT_CONFIG) -> Path:
    """Point ``haictl`` (jobs and fs commands) at this cluster, with the admin token (mode 0600)."""
    path = Path(os.environ.get("HAI_CLIENT_CONFIG", str(path))).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f"# written by haictl up for cluster {cfg.name!r}\n"
        f'scheduler = "{cfg.scheduler.address}"\n'
        f'token_file = "{admin_token_file(cfg)}"\n'
        f'mgmtd = "{cfg.mgmtd.address}"\n'
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


def _wait_agents(cfg: ClusterConfig, timeout_s: float) -> None:
    from haiplatform.scheduler_client import SchedulerClient

    client = SchedulerClient(cfg.scheduler.address, admin_token_file(cfg).read_text().strip())
    want = {a.name for a in cfg.agents}
    deadline = time.monotonic() + timeout_s
    while True:
        up = {n.name for n in client.nodes() if n.state == "up"}
        if want <= up:
            return
        if time.monotonic() > deadline:
            raise FireflyerError(f"agents {sorted(want - up)} did not register within {timeout_s:.0f} s")
        time.sleep(0.2)


def up(
    cfg: ClusterConfig,
    progress: Callable[[str], None] = print,
    timeout_s: float = 60.0,
    host_prefix: Callable[[str], list[str]] | None = None,
) -> dict[str, Any]:
    """Start every service of ``cfg`` on this machine, wait until all serve; return the state written.

    ``host_prefix(host)`` gives the argv prefix that runs a command "on" ``host`` (e.g. ``ip netns
    exec NS`` for hosts simulated by network namespaces); by default everything runs here.
    """
    state_path = cfg.data_dir / STATE_FILE
    if state_path.exists() and any(
        _alive(p["pid"]) for p in json.loads(state_path.read_text())["processes"].values()
    ):
        raise FireflyerError(f"a cluster is already running from {cfg.data_dir} (haictl down first)")
    cfg = resolve_ports(cfg)
    for sub in ("fs3", "scheduler", "agents", "logs"):
        (cfg.data_dir / sub).mkdir(parents=True, exist_ok=True)
    config_path = cfg.data_dir / "cluster.toml"
    config_path.write_text(dump_config(cfg))
    launcher = Launcher(cfg.data_dir / "logs")

    def on(host: str, argv: list[str]) -> list[str]:
        return [*host_prefix(host), *argv] if host_prefix else argv

    try:
        from fs3.cluster import ensure_chain_table, wait_cluster_serving

        progress(f"mgmtd      {cfg.mgmtd.address}")
        launcher.start(
            "mgmtd",
            on(cfg.mgmtd.host, service_argv(cfg, "mgmtd")),
            port=(cfg.mgmtd.host, cfg.mgmtd.port),
            timeout_s=timeout_s,
        )
        ensure_chain_table(cfg.mgmtd.address, chain_table_for(cfg))
        for i, srv in enumerate(cfg.storage.servers):
            progress(f"storage-{i}  {srv.address}")
            launcher.start(f"storage-{i}", on(srv.host, service_argv(cfg, "storage", index=i)))
        for i, srv in enumerate(cfg.storage.servers):
            launcher.wait_listening(f"storage-{i}", srv.host, srv.port, timeout_s)
        progress(f"meta       {cfg.meta.address}")
        launcher.start(
            "meta",
            on(cfg.meta.host, service_argv(cfg, "meta")),
            port=(cfg.meta.host, cfg.meta.port),
            timeout_s=timeout_s,
        )
        try:
            wait_cluster_serving(cfg.mgmtd.address, timeout_s)
        except TimeoutError:
            _raise_if_dead(launcher)  # a server that died explains the timeout better than the timeout
            raise
        progress(
            f"scheduler  {cfg.scheduler.address} (web http://{cfg.scheduler.host}:{cfg.scheduler.web_port}/)"
        )
        launcher.start("scheduler", on(cfg.scheduler.host, service_argv(cfg, "scheduler")), port=(cfg.scheduler.host, cfg.scheduler.port),
                       timeout_s=timeout_s)  # fmt: skip
        for agent in cfg.agents:
            progress(f"agent      {agent.name} ({agent.slots} slots)")
            launcher.start(f"agent-{agent.name}", on(agent.host, service_argv(cfg, "agent", name=agent.name)))
        _wait_agents(cfg, timeout_s)
    except BaseException:
        launcher.stop_all(grace_s=2)
        raise
    state = {
        "name": cfg.name,
        "config": str(config_path),
        "mgmtd": cfg.mgmtd.address,
        "meta": cfg.meta.address,
        "scheduler": cfg.scheduler.address,
        "web": f"http://{cfg.scheduler.host}:{cfg.scheduler.web_port}/",
        "metrics": {
            "scheduler": f"http://{cfg.scheduler.host}:{cfg.scheduler.web_port}/metrics",
            "mgmtd": _metrics_url(cfg.mgmtd),
            "meta": _metrics_url(cfg.meta),
            **{f"storage-{i}": _metrics_url(srv) for i, srv in enumerate(cfg.storage.servers)},
        },
        "admin_token_file": str(admin_token_file(cfg)),
        "processes": {
            n: {"pid": p.pid, "argv": list(p.popen.args), "log": str(p.log_path)}
            for n, p in launcher.procs.items()
        },
    }
    state_path.write_text(json.dumps(state, indent=2))
    return state


def _metrics_url(ep: ServiceEndpoint) -> str:
    return f"http://{ep.host}:{ep.metrics_port}/metrics" if ep.metrics_port else ""


def _raise_if_dead(launcher: Launcher) -> None:
    """RuntimeError naming the first process that exited, with the end of its log."""
    for proc in launcher.procs.values():
        if not proc.alive():
            raise RuntimeError(f"{proc.name} did not start: exited with code {proc.popen.returncode}\n"
                               f"--- {proc.log_path} ---\n{proc.log_text()[-3000:]}")  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own dead child) still answers kill(0): look at its state.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def read_state(data_dir: Path) -> dict[str, Any]:
    """The state ``up`` wrote for the cluster under ``data_dir``."""
    path = Path(data_dir).expanduser() / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FireflyerError(f"no cluster state in {path.parent} (was it started with haictl up?)") from None


def down(data_dir: Path, grace_s: float = 5.0) -> list[str]:
    """Stop every process of the cluster under ``data_dir`` (clients first); return their names."""
    state = read_state(data_dir)
    names = list(state["processes"])
    for name in reversed(names):  # agents and scheduler before storage, mgmtd last
        pid = state["processes"][name]["pid"]
        if not _alive(pid):
            continue
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            continue
        deadline = time.monotonic() + grace_s
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            os.killpg(pid, signal.SIGKILL)  # the group: children that outlived their parent too
        except ProcessLookupError:
            pass
    (Path(data_dir).expanduser() / STATE_FILE).unlink()
    return names


def status(data_dir: Path) -> dict[str, Any]:
    """What runs where: each process with pid, alive flag and log; plus the cluster's addresses."""
    state = read_state(data_dir)
    for proc in state["processes"].values():
        proc["alive"] = _alive(proc["pid"])
    return state
