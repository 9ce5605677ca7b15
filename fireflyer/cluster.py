"""A whole Fire-Flyer cluster from one config: the argv of every role, and ``haictl up/down/status``.

``service_argv`` is the single mapping from the cluster TOML to each service's own flags: operators'
``haictl serve ROLE`` (systemd units, Kubernetes pods) and ``haictl up`` (all roles on one machine)
both go through it. ``up`` writes the resolved config (``cluster.toml``) and a state file
(``cluster.json``: every process with its pid) under the cluster's data directory, and records that
directory in the client config, so ``down``, ``status`` and ``serve`` find the cluster from any later
shell; ``serve`` registers a restarted server there, so ``status`` and ``down`` see it too.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ffcommon import db
from ffcommon.launcher import Launcher
from ffcommon.ports import free_port
from fireflyer.config import (
    ROLES,
    ClusterAgent,
    ClusterConfig,
    ServiceEndpoint,
    StorageServerConfig,
    client_config_path,
    load_config,
    read_client_config,
)
from fireflyer.errors import FireflyerError

STATE_FILE = "cluster.json"
CONFIG_FILE = "cluster.toml"
_LOCK_FILE = ".cluster.lock"


def _db_url(database: str, sqlite_file: Path) -> str:
    """The ``--db`` URL of a service whose config says ``database`` (``sqlite``: ``sqlite_file``)."""
    return db.sqlite_url(sqlite_file) if database == "sqlite" else database


def _fs3_db_url(cfg: ClusterConfig) -> str:
    """mgmtd and meta share one store (3FS keeps both in FoundationDB)."""
    return _db_url(cfg.meta.database, cfg.data_dir / "fs3" / "fs3.db")


def admin_token_file(cfg: ClusterConfig) -> Path:
    """Where the scheduler bootstraps the admin token (mode 0600) and agents read it."""
    return cfg.data_dir / "scheduler" / "admin.token"


def _agent(cfg: ClusterConfig, name: str) -> ClusterAgent:
    for agent in cfg.agents:
        if agent.name == name:
            return agent
    return ClusterAgent(name=name, host=cfg.agents[0].host if cfg.agents else "127.0.0.1")


def service_argv(
    cfg: ClusterConfig, role: str, index: int = 0, name: str = "", mountpoint: str = ""
) -> list[str]:
    """The command line that runs ``role`` of ``cfg`` (``index``: storage server or mgmtd instance, 0 the
    first, 1.. its standbys; ``name``: agent)."""
    py = [sys.executable, "-m"]
    mgmtd = cfg.mgmtd.addresses  # every instance: services follow whichever leads
    if role in ("mgmtd", "meta", "storage"):
        from fs3 import admin as fs3_admin  # on use: haictl's other commands need no gRPC
    if role == "mgmtd":
        instances = cfg.mgmtd.instances
        if not 0 <= index < len(instances):
            raise FireflyerError(
                f"mgmtd index {index}: the config has instances 0..{len(instances) - 1} (1.. are mgmtd.standbys)"
            )
        ep = instances[index]
        return fs3_admin.mgmtd_argv(ep.host, ep.port, _fs3_db_url(cfg), cfg.mgmtd.lease_s,
                                    ep.metrics_port or None)  # fmt: skip
    if role == "meta":
        return fs3_admin.meta_argv(cfg.meta.host, cfg.meta.port, _fs3_db_url(cfg), mgmtd,
                                   metrics_port=cfg.meta.metrics_port or None)  # fmt: skip
    if role == "storage":
        if not 0 <= index < len(cfg.storage.servers):
            raise FireflyerError(
                f"storage index {index}: the config has servers 0..{len(cfg.storage.servers) - 1}"
            )
        srv = cfg.storage.servers[index]
        return fs3_admin.storage_argv(index, srv.host, srv.port, cfg.data_dir / f"storage-{index}", mgmtd,
                                      srv.data_port, metrics_port=srv.metrics_port or None,
                                      scrub_rate_bytes_s=cfg.storage.scrub_rate_bytes_s)  # fmt: skip
    if role == "scheduler":
        sc = cfg.scheduler
        argv = [*py, "haiplatform.scheduler", "--host", sc.host, "--port", str(sc.port),
                "--suspend-grace-s", str(sc.suspend_grace_s), "--web-port", str(sc.web_port),
                "--admin-token-file", str(admin_token_file(cfg)), "--fs3-mgmtd", mgmtd]  # fmt: skip
        return [*argv, "--db", _db_url(sc.database, cfg.data_dir / "scheduler" / "sched.db")]
    if role == "agent":
        agent = _agent(cfg, name or cfg.agents[0].name)
        mount = ["--fs3-mount", agent.fs3_mount] if agent.fs3_mount else []
        return [*py, "haiplatform.agent", "--scheduler", cfg.scheduler.address, "--node-name", agent.name,
                "--slots", str(agent.slots), "--host", agent.host, "--work-dir", str(cfg.data_dir / "agents" / agent.name),
                "--token-file", str(admin_token_file(cfg)), "--job-env", f"FS3_MGMTD={mgmtd}", *mount]  # fmt: skip
    if role == "fuse":
        if not mountpoint:
            raise FireflyerError("fuse: a mountpoint is required")
        return [*py, "fs3.fuse", "--mgmtd", mgmtd, mountpoint]
    raise FireflyerError(f"unknown role {role!r}: one of {', '.join(ROLES)}")


def chain_table_for(cfg: ClusterConfig) -> Any:
    """The chain table ``cfg`` describes (uploaded once, when mgmtd has none)."""
    from fs3.admin import chain_table_request

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
    mgmtd = fix(cfg.mgmtd, "mgmtd")
    mgmtd = replace(
        mgmtd, standbys=[fix(s, f"mgmtd.standbys[{i}]") for i, s in enumerate(cfg.mgmtd.standbys)]
    )
    return replace(
        cfg,
        mgmtd=mgmtd,
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

    standbys = "standbys = [" + ", ".join(ep(s) for s in cfg.mgmtd.standbys) + "]"

    lines = [
        "[cluster]", f"name = {q(cfg.name)}", f"data_dir = {q(str(cfg.data_dir))}", "",
        "[mgmtd]", f"host = {q(cfg.mgmtd.host)}", f"port = {cfg.mgmtd.port}", f"metrics_port = {cfg.mgmtd.metrics_port}", f"lease_s = {cfg.mgmtd.lease_s}", standbys, "",
        "[meta]", f"host = {q(cfg.meta.host)}", f"port = {cfg.meta.port}", f"metrics_port = {cfg.meta.metrics_port}", f"database = {q(cfg.meta.database)}", "",
        "[storage]", f"replicas = {cfg.storage.replicas}", f"chunk_size_bytes = {cfg.storage.chunk_size_bytes}",
        f"scrub_rate_bytes_s = {cfg.storage.scrub_rate_bytes_s}",
        "servers = [" + ", ".join(ep(s) for s in cfg.storage.servers) + "]", "",
        "[scheduler]", f"host = {q(cfg.scheduler.host)}", f"port = {cfg.scheduler.port}",
        f"web_port = {cfg.scheduler.web_port}", f"database = {q(cfg.scheduler.database)}",
        f"suspend_grace_s = {cfg.scheduler.suspend_grace_s}", "",
    ]  # fmt: skip
    for a in cfg.agents:
        mount = [f"fs3_mount = {q(a.fs3_mount)}"] if a.fs3_mount else []
        lines += ["[[agents]]", f"name = {q(a.name)}", f"host = {q(a.host)}", f"slots = {a.slots}", *mount, ""]  # fmt: skip
    return "\n".join(lines)


def write_client_config(cfg: ClusterConfig, path: Path | None = None) -> Path:
    """Point ``haictl`` at this cluster (mode 0600): jobs and fs commands at its scheduler (with the
    admin token) and mgmtd, and ``status``/``down``/``serve`` at its data directory."""
    path = path or client_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f"# written by haictl up for cluster {cfg.name!r}\n"
        f"scheduler = {json.dumps(cfg.scheduler.address)}\n"
        f"token_file = {json.dumps(str(admin_token_file(cfg)))}\n"
        f"mgmtd = {json.dumps(cfg.mgmtd.addresses)}\n"
        f"data_dir = {json.dumps(str(cfg.data_dir))}\n"
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


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


def _start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), which tells a process from a later one with its pid."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _entry(pid: int, argv: list[str], log: str) -> dict[str, Any]:
    """A process as the state file records it."""
    return {"pid": pid, "argv": argv, "log": log, "started": _start_ticks(pid)}


def _alive(pid: int, started: int | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, given ``started``, is still the process recorded then."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # A zombie (our own dead child) still answers kill(0): look at its state.
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z" and (started is None or int(fields[19]) == started)


def _proc_alive(proc: dict[str, Any]) -> bool:
    return _alive(proc["pid"], proc.get("started"))


class _StateLock:
    """An exclusive lock on a cluster's state file, so ``serve``, ``down`` and ``up`` never interleave."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / _LOCK_FILE

    def __enter__(self) -> _StateLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)


def _write_state(data_dir: Path, state: dict[str, Any]) -> None:
    path = Path(data_dir) / STATE_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, path)


def data_dir_candidates(data_dir: Path | None, config_path: Path | None = None) -> list[tuple[Path, str]]:
    """Where the cluster a command means may live, each with why it is looked at, in the order tried.

    ``--data-dir`` (or FIREFLYER_DATA_DIR) alone if given; else ``--config``'s data_dir alone; else the
    data_dir ``haictl up`` recorded in the client config, then the embedded config's default.
    """
    if data_dir is not None:
        return [(Path(data_dir).expanduser().resolve(), "--data-dir / FIREFLYER_DATA_DIR")]
    if config_path is not None:
        return [(load_config(config_path).data_dir.resolve(), f"[cluster].data_dir of {config_path}")]
    out = []
    recorded = read_client_config().get("data_dir")
    if isinstance(recorded, str) and recorded:
        out.append((Path(recorded).expanduser(), f"data_dir in {client_config_path()}, written by haictl up"))
    default = load_config(None).data_dir
    if all(d != default for d, _ in out):
        out.append((default, "the default data_dir"))
    return out


def find_cluster(data_dir: Path | None, config_path: Path | None = None) -> Path:
    """The data directory of the running-or-last cluster the command means; else an error saying where it looked."""
    candidates = data_dir_candidates(data_dir, config_path)
    for path, _why in candidates:
        if (path / STATE_FILE).exists():
            return path
    looked = "; ".join(f"{path / STATE_FILE} ({why})" for path, why in candidates)
    raise FireflyerError(
        f"no cluster state: looked for {looked}. Start one with haictl up, or pass --data-dir DIR"
    )


def serve_config(config_path: Path | None, data_dir: Path | None) -> ClusterConfig:
    """The config ``haictl serve`` runs a role with: ``--config``; else the ``cluster.toml`` that
    ``haictl up`` wrote into the cluster's data directory (its resolved ports); else the embedded one."""
    if config_path is not None:
        cfg = load_config(config_path)
        if data_dir is not None:
            cfg.data_dir = Path(data_dir).expanduser().resolve()
        return cfg
    for path, _why in data_dir_candidates(data_dir):
        if (path / CONFIG_FILE).exists():
            cfg = load_config(path / CONFIG_FILE)
            cfg.data_dir = path
            return cfg
    cfg = load_config(None)
    if data_dir is not None:
        cfg.data_dir = Path(data_dir).expanduser().resolve()
    return cfg


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


def read_state(data_dir: Path) -> dict[str, Any]:
    """The state ``up`` wrote for the cluster under ``data_dir``."""
    path = Path(data_dir).expanduser() / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FireflyerError(f"no cluster state in {path.parent} (was it started with haictl up?)") from None


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
