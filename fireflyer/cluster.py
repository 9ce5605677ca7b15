"""A whole Fire-Flyer cluster on this machine: ``haictl up``, ``down``, ``status`` and ``serve``'s restarts.

``up`` writes the resolved config (``cluster.toml``) and a state file (``cluster.json``, see
``fireflyer.cluster_state``) under the cluster's data directory; ``serve`` registers a restarted
server there, so ``status`` and ``down`` see it too. Each role's argv comes from
``fireflyer.services.service_argv``; both names are re-exported here.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ffcommon.launcher import Launcher
from fireflyer.cluster_state import (
    CONFIG_FILE,
    STATE_FILE,
    _entry,
    _proc_alive,
    _StateLock,
    _write_state,
    data_dir_candidates,
    find_cluster,
    read_state,
    serve_config,
    write_client_config,
)
from fireflyer.cluster_state import _alive as _alive  # re-exported: tests tell live pids with it
from fireflyer.config import ClusterConfig, ServiceEndpoint
from fireflyer.errors import FireflyerError
from fireflyer.services import (
    _agent,
    admin_token_file,
    chain_table_for,
    dump_config,
    resolve_ports,
    service_argv,
)

# What callers import from here: this module's verbs, and the parts of services/cluster_state they use.
__all__ = [
    "CONFIG_FILE", "STATE_FILE", "admin_token_file", "chain_table_for", "data_dir_candidates", "down",
    "dump_config", "find_cluster", "process_name", "read_state", "register_foreground", "resolve_ports",
    "serve_config", "serve_detached", "service_argv", "status", "up", "write_client_config",
]  # fmt: skip


def _wait_agents(cfg: ClusterConfig, timeout_s: float, names: list[str] | None = None) -> None:
    from haiplatform.scheduler_client import SchedulerClient

    client = SchedulerClient(cfg.scheduler.address, admin_token_file(cfg).read_text().strip())
    want = set(names) if names is not None else {a.name for a in cfg.agents}
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
        _proc_alive(p) for p in json.loads(state_path.read_text())["processes"].values()
    ):
        raise FireflyerError(f"a cluster is already running from {cfg.data_dir} (haictl down first)")
    cfg = resolve_ports(cfg)
    for sub in ("fs3", "scheduler", "agents", "logs"):
        (cfg.data_dir / sub).mkdir(parents=True, exist_ok=True)
    config_path = cfg.data_dir / CONFIG_FILE
    config_path.write_text(dump_config(cfg))
    launcher = Launcher(cfg.data_dir / "logs")

    def on(host: str, argv: list[str]) -> list[str]:
        return [*host_prefix(host), *argv] if host_prefix else argv

    try:
        from fs3.admin import ensure_chain_table, wait_cluster_serving

        for i, ep in enumerate(cfg.mgmtd.instances):  # the first started leads; the others stand by
            progress(f"mgmtd      {ep.address}" + (" (standby)" if i else ""))
            launcher.start(
                process_name(cfg, "mgmtd", index=i),
                on(ep.host, service_argv(cfg, "mgmtd", index=i)),
                port=(ep.host, ep.port),
                timeout_s=timeout_s,
            )
        ensure_chain_table(cfg.mgmtd.addresses, chain_table_for(cfg))
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
            wait_cluster_serving(cfg.mgmtd.addresses, timeout_s)
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
        "mgmtd": cfg.mgmtd.addresses,
        "meta": cfg.meta.address,
        "scheduler": cfg.scheduler.address,
        "web": f"http://{cfg.scheduler.host}:{cfg.scheduler.web_port}/",
        "metrics": {
            "scheduler": f"http://{cfg.scheduler.host}:{cfg.scheduler.web_port}/metrics",
            **{
                process_name(cfg, "mgmtd", index=i): _metrics_url(ep)
                for i, ep in enumerate(cfg.mgmtd.instances)
            },
            "meta": _metrics_url(cfg.meta),
            **{f"storage-{i}": _metrics_url(srv) for i, srv in enumerate(cfg.storage.servers)},
        },
        "admin_token_file": str(admin_token_file(cfg)),
        "processes": {
            n: _entry(p.pid, list(p.popen.args), str(p.log_path)) for n, p in launcher.procs.items()
        },
    }
    _write_state(cfg.data_dir, state)
    return state


def _metrics_url(ep: ServiceEndpoint) -> str:
    return f"http://{ep.host}:{ep.metrics_port}/metrics" if ep.metrics_port else ""


def _raise_if_dead(launcher: Launcher) -> None:
    """RuntimeError naming the first process that exited, with the end of its log."""
    for proc in launcher.procs.values():
        if not proc.alive():
            raise RuntimeError(f"{proc.name} did not start: exited with code {proc.popen.returncode}\n"
                               f"--- {proc.log_path} ---\n{proc.log_text()[-3000:]}")  # fmt: skip


def process_name(cfg: ClusterConfig, role: str, index: int = 0, name: str = "") -> str:
    """The name ``up`` gives ``role``'s process (``storage-1``, ``agent-node2``) in the state file."""
    if role == "storage":
        return f"storage-{index}"
    if role == "mgmtd":
        return "mgmtd" if index == 0 else f"mgmtd-{index}"
    if role == "agent":
        return f"agent-{_agent(cfg, name or cfg.agents[0].name).name}"
    if role == "fuse":
        raise FireflyerError("fuse: mounts are not processes of the cluster (use haictl fs mount/umount)")
    return role


def _listen_address(cfg: ClusterConfig, role: str, index: int) -> tuple[str, int] | None:
    if role == "mgmtd":
        ep = cfg.mgmtd.instances[index]
        return ep.host, ep.port
    if role in ("meta", "scheduler"):
        ep = getattr(cfg, role)
        return ep.host, ep.port
    if role == "storage":
        srv = cfg.storage.servers[index]
        return srv.host, srv.port
    return None


def _check_restartable(cfg: ClusterConfig, proc_name: str) -> dict[str, Any] | None:
    """The cluster's state if ``cfg.data_dir`` has one (None: not a local cluster); error if ``proc_name`` runs."""
    try:
        state = json.loads((cfg.data_dir / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    old = state["processes"].get(proc_name)
    if old is not None and _proc_alive(old):
        raise FireflyerError(
            f"{proc_name} of the cluster in {cfg.data_dir} is already running (pid {old['pid']}); "
            "stop it first, or haictl down"
        )
    return state


def register_foreground(
    cfg: ClusterConfig, role: str, argv: list[str], index: int = 0, name: str = ""
) -> bool:
    """Record this process (about to exec ``argv``) as ``role``'s server of the cluster in
    ``cfg.data_dir``, so that ``status`` shows it and ``down`` stops it; False if that is no local cluster."""
    if role == "fuse":
        return False
    proc_name = process_name(cfg, role, index, name)
    with _StateLock(cfg.data_dir):
        state = _check_restartable(cfg, proc_name)
        if state is None:
            return False
        state["processes"][proc_name] = _entry(os.getpid(), argv, "(foreground: its terminal)")
        _write_state(cfg.data_dir, state)
    return True


def serve_detached(
    cfg: ClusterConfig, role: str, index: int = 0, name: str = "", timeout_s: float = 60.0
) -> dict[str, Any]:
    """(Re)start ``role``'s server of the local cluster in ``cfg.data_dir`` in the background, log in
    its logs/ like ``up``'s, registered in the state file; returns once it serves (its recorded entry)."""
    proc_name = process_name(cfg, role, index, name)
    argv = service_argv(cfg, role, index=index, name=name)
    with _StateLock(cfg.data_dir):
        state = _check_restartable(cfg, proc_name)
        if state is None:
            raise FireflyerError(
                f"no cluster state in {cfg.data_dir}: --detach restarts a server of a cluster started with haictl up"
            )
        launcher = Launcher(cfg.data_dir / "logs")
        try:
            launcher.start(proc_name, argv, port=_listen_address(cfg, role, index), timeout_s=timeout_s)
            if role == "agent":
                _wait_agents(cfg, timeout_s, [_agent(cfg, name or cfg.agents[0].name).name])
        except BaseException:
            launcher.stop_all(grace_s=2)
            raise
        proc = launcher.procs[proc_name]
        entry = _entry(proc.pid, argv, str(proc.log_path))
        state["processes"][proc_name] = entry
        _write_state(cfg.data_dir, state)
    return {"name": proc_name, **entry}


def _signal(pid: int, sig: int) -> None:
    """``sig`` to ``pid``'s process group when it leads one (what ``up`` starts), else to ``pid`` alone."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def down(data_dir: Path, grace_s: float = 5.0) -> list[str]:
    """Stop every process of the cluster under ``data_dir`` (clients first), restarted ones included;
    return their names."""
    with _StateLock(Path(data_dir).expanduser()):
        state = read_state(data_dir)
        names = list(state["processes"])
        for name in reversed(names):  # agents and scheduler before storage, mgmtd last
            proc = state["processes"][name]
            if not _proc_alive(proc):
                continue
            _signal(proc["pid"], signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            while _proc_alive(proc) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _proc_alive(proc) or os.getpgid(proc["pid"]) == proc["pid"]:
                _signal(proc["pid"], signal.SIGKILL)  # the group: children that outlived their parent too
        (Path(data_dir).expanduser() / STATE_FILE).unlink()
    return names


def status(data_dir: Path) -> dict[str, Any]:
    """What runs where: each process with pid, alive flag and log; plus the cluster's addresses."""
    state = read_state(data_dir)
    for proc in state["processes"].values():
        proc["alive"] = _proc_alive(proc)
    return state
