"""What each process of a cluster is given: its argv (``service_argv``), free ports, the resolved TOML.

``service_argv`` is the single mapping from the cluster TOML to each service's own flags: operators'
``haictl serve ROLE`` (systemd units, Kubernetes pods) and ``haictl up`` (all roles on one machine)
both go through it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ffcommon import db
from ffcommon.ports import free_port
from fireflyer.config import (
    ROLES,
    ClusterAgent,
    ClusterConfig,
    ServiceEndpoint,
    StorageServerConfig,
)
from fireflyer.errors import FireflyerError


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
