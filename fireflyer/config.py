"""The cluster configuration: one TOML file describes every service of a Fire-Flyer cluster.

``haictl up`` uses the embedded default (one machine, everything on loopback); operators write their
own (see ``deploy/cluster.example.toml``) and start each service with ``haictl serve ROLE``.
Validation errors name the offending field, e.g. ``storage[1].port: must be an integer in 1..65535``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ffcommon.config import client_config_path, parse_toml
from fireflyer.errors import ConfigError

# The server roles of a cluster, each run by ``haictl serve ROLE`` (see ``fireflyer.services.service_argv``).
ROLES = ("mgmtd", "meta", "storage", "scheduler", "agent", "fuse")

DEFAULT_CONFIG_TOML = """\
# Embedded default: a whole cluster on this machine, on loopback ports.
[cluster]
name = "local"
data_dir = "~/.fireflyer/local"   # services' data and logs live under here

[mgmtd]
host = "127.0.0.1"
port = 0                          # 0: pick a free port when the cluster starts
metrics_port = 0                  # Prometheus /metrics of this service (0: a free port)
lease_s = 3.0
standbys = [                      # more mgmtd instances on the same database: one leads, a standby
  { host = "127.0.0.1", port = 0 }, # takes over within seconds of its death ([] = none)
]

[meta]
host = "127.0.0.1"
port = 0
metrics_port = 0
database = "sqlite"               # "sqlite" (file under data_dir) or a postgresql:// DSN

[storage]
replicas = 3                      # chain length (copies of every chunk)
chunk_size_bytes = 1048576
servers = [                       # each may also set metrics_port and data_port (chunk reads over
                                  # TCP; 0: a free port, advertised to clients through mgmtd)
  { host = "127.0.0.1", port = 0 },
  { host = "127.0.0.1", port = 0 },
  { host = "127.0.0.1", port = 0 },
]

[scheduler]
host = "127.0.0.1"
port = 0
web_port = 0
database = "sqlite"
suspend_grace_s = 5.0

[[agents]]
name = "node1"
host = "127.0.0.1"
slots = 8

[[agents]]
name = "node2"
host = "127.0.0.1"
slots = 8
"""


@dataclass
class Endpoint:
    """A service address; port 0 means 'choose a free one at start'."""

    host: str = "127.0.0.1"
    port: int = 0

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass
class ServiceEndpoint(Endpoint):
    """An fs3 service: its gRPC address and where it serves Prometheus ``/metrics`` (0: a free port)."""

    metrics_port: int = 0


@dataclass
class MgmtdConfig(ServiceEndpoint):
    """The leading mgmtd's endpoint, its node lease, and the standby instances that share its database."""

    lease_s: float = 3.0
    standbys: list[ServiceEndpoint] = field(default_factory=list)

    @property
    def instances(self) -> list[ServiceEndpoint]:
        """Every mgmtd instance: index 0 is this endpoint, 1.. the standbys (``haictl serve mgmtd --index``)."""
        return [ServiceEndpoint(self.host, self.port, self.metrics_port), *self.standbys]

    @property
    def addresses(self) -> str:
        """``HOST:PORT,HOST:PORT...`` of every instance: what services and clients are given."""
        return ",".join(ep.address for ep in self.instances)


@dataclass
class MetaConfig(ServiceEndpoint):
    database: str = "sqlite"


@dataclass
class StorageServerConfig(ServiceEndpoint):
    """A storage server; ``data_port`` serves chunk reads over plain TCP (0: any free port, which the
    server advertises through mgmtd, so only a firewall needs it fixed)."""

    data_port: int = 0


@dataclass
class StorageConfig:
    replicas: int = 3
    chunk_size_bytes: int = 1 << 20
    servers: list[StorageServerConfig] = field(default_factory=list)
    scrub_rate_bytes_s: int = (
        32 << 20
    )  # the background scrubber re-reads and checks this much a second (0: off)


@dataclass
class ClusterScheduler(Endpoint):
    """The cluster file's ``[scheduler]``: where the scheduler runs (its own knobs are haiplatform's SchedulerConfig)."""

    web_port: int = 0
    database: str = "sqlite"
    suspend_grace_s: float = 5.0


@dataclass
class ClusterAgent:
    """One of the cluster file's ``[[agents]]``: a node (the agent's own knobs are haiplatform's AgentConfig)."""

    name: str = "node1"
    host: str = "127.0.0.1"
    slots: int = 8
    fs3_mount: str = ""  # where this node mounts fs3; jobs get it as FS3_MOUNT while it is mounted


@dataclass
class ClusterConfig:
    """Every service of one cluster; ``data_dir`` holds their data and logs."""

    name: str
    data_dir: Path
    mgmtd: MgmtdConfig
    meta: MetaConfig
    storage: StorageConfig
    scheduler: ClusterScheduler
    agents: list[ClusterAgent]


def _take(table: dict[str, Any], path: str, key: str, kind: type, default: Any) -> Any:
    value = table.pop(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
        raise ConfigError(f"{path}{key}: must be {kind.__name__}, got {value!r}")
    return value


def _port(table: dict[str, Any], path: str, key: str = "port") -> int:
    value = _take(table, path, key, int, 0)
    if not 0 <= value <= 65535:
        raise ConfigError(f"{path}{key}: must be an integer in 0..65535, got {value}")
    return value


def _positive(value: float, where: str) -> None:
    if value <= 0:
        raise ConfigError(f"{where}: must be positive, got {value}")


def _no_extra(table: dict[str, Any], path: str) -> None:
    if table:
        raise ConfigError(f"{path}{sorted(table)[0]}: unknown field")


def _table(doc: dict[str, Any], key: str) -> dict[str, Any]:
    value = doc.pop(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a table")
    return dict(value)


def _endpoint(raw: dict[str, Any], path: str) -> tuple[str, int]:
    return _take(raw, path, "host", str, "127.0.0.1"), _port(raw, path)


def _service_endpoint(raw: dict[str, Any], path: str) -> tuple[str, int, int]:
    return (*_endpoint(raw, path), _port(raw, path, "metrics_port"))


def _database(value: str, path: str) -> None:
    """A service's database setting: ``sqlite`` (a file under data_dir) or a postgresql:// URL."""
    if value != "sqlite" and not value.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"{path}: must be 'sqlite' or a postgresql:// DSN, got {value!r}")


def parse_config(text: str) -> ClusterConfig:
    """Parse and validate a cluster TOML document."""
    doc = parse_toml(text, "not valid TOML", ConfigError)

    cl = _table(doc, "cluster")
    name = _take(cl, "cluster.", "name", str, "local")
    data_dir = Path(_take(cl, "cluster.", "data_dir", str, "~/.fireflyer/local")).expanduser()
    _no_extra(cl, "cluster.")

    mg = _table(doc, "mgmtd")
    raw_standbys = mg.pop("standbys", [])
    if not isinstance(raw_standbys, list):
        raise ConfigError("mgmtd.standbys: must be an array of {host, port} tables")
    standbys = []
    for i, raw in enumerate(raw_standbys):
        if not isinstance(raw, dict):
            raise ConfigError(f"mgmtd.standbys[{i}]: must be a table")
        raw = dict(raw)
        standbys.append(ServiceEndpoint(*_service_endpoint(raw, f"mgmtd.standbys[{i}].")))
        _no_extra(raw, f"mgmtd.standbys[{i}].")
    mgmtd = MgmtdConfig(
        *_service_endpoint(mg, "mgmtd."),
        lease_s=_take(mg, "mgmtd.", "lease_s", float, 3.0),
        standbys=standbys,
    )
    _positive(mgmtd.lease_s, "mgmtd.lease_s")
    _no_extra(mg, "mgmtd.")

    me = _table(doc, "meta")
    meta = MetaConfig(*_service_endpoint(me, "meta."), database=_take(me, "meta.", "database", str, "sqlite"))
    _database(meta.database, "meta.database")
    _no_extra(me, "meta.")
    for i, sb in enumerate(mgmtd.standbys):
        if meta.database == "sqlite" and sb.host != mgmtd.host:
            raise ConfigError(
                f"mgmtd.standbys[{i}].host: {sb.host} is not mgmtd.host ({mgmtd.host}); instances on other "
                "hosts share the leader lease through the database: set meta.database to a postgresql:// DSN"
            )

    st = _table(doc, "storage")
    replicas = _take(st, "storage.", "replicas", int, 3)
    chunk = _take(st, "storage.", "chunk_size_bytes", int, 1 << 20)
    scrub_rate = _take(st, "storage.", "scrub_rate_bytes_s", int, 32 << 20)
    if scrub_rate < 0:
        raise ConfigError(f"storage.scrub_rate_bytes_s: must be >= 0 (0: no scrub), got {scrub_rate}")
    raw_servers = st.pop("servers", [{}, {}, {}])
    if not isinstance(raw_servers, list) or not raw_servers:
        raise ConfigError("storage.servers: must be a non-empty array of {host, port} tables")
    servers = []
    for i, raw in enumerate(raw_servers):
        if not isinstance(raw, dict):
            raise ConfigError(f"storage.servers[{i}]: must be a table")
        raw = dict(raw)
        servers.append(
            StorageServerConfig(
                *_service_endpoint(raw, f"storage.servers[{i}]."),
                data_port=_port(raw, f"storage.servers[{i}].", "data_port"),
            )
        )
        _no_extra(raw, f"storage.servers[{i}].")
    if not 1 <= replicas <= len(servers):
        raise ConfigError(
            f"storage.replicas: must be between 1 and the number of servers ({len(servers)}), got {replicas}"
        )
    if chunk < 4096 or chunk & (chunk - 1):
        raise ConfigError(f"storage.chunk_size_bytes: must be a power of two >= 4096, got {chunk}")
    _no_extra(st, "storage.")

    sc = _table(doc, "scheduler")
    scheduler = ClusterScheduler(
        *_endpoint(sc, "scheduler."),
        web_port=_port(sc, "scheduler.", "web_port"),
        database=_take(sc, "scheduler.", "database", str, "sqlite"),
        suspend_grace_s=_take(sc, "scheduler.", "suspend_grace_s", float, 5.0),
    )
    _positive(scheduler.suspend_grace_s, "scheduler.suspend_grace_s")
    _database(scheduler.database, "scheduler.database")
    _no_extra(sc, "scheduler.")

    raw_agents = doc.pop("agents", [{"name": "node1"}])
    if not isinstance(raw_agents, list) or not raw_agents:
        raise ConfigError("agents: must be a non-empty array of tables")
    agents = []
    for i, raw in enumerate(raw_agents):
        if not isinstance(raw, dict):
            raise ConfigError(f"agents[{i}]: must be a table")
        raw = dict(raw)
        path = f"agents[{i}]."
        agent = ClusterAgent(
            _take(raw, path, "name", str, f"node{i + 1}"),
            _take(raw, path, "host", str, "127.0.0.1"),
            _take(raw, path, "slots", int, 8),
            _take(raw, path, "fs3_mount", str, ""),
        )
        _positive(agent.slots, path + "slots")
        if agent.fs3_mount and not agent.fs3_mount.startswith("/"):
            raise ConfigError(f"{path}fs3_mount: must be an absolute path, got {agent.fs3_mount!r}")
        _no_extra(raw, path)
        agents.append(agent)
    names = [a.name for a in agents]
    if len(set(names)) != len(names):
        raise ConfigError(f"agents: duplicate name {sorted(n for n in names if names.count(n) > 1)[0]!r}")
    _no_extra(doc, "")
    return ClusterConfig(
        name, data_dir, mgmtd, meta, StorageConfig(replicas, chunk, servers, scrub_rate), scheduler, agents
    )


def load_config(path: str | Path | None = None) -> ClusterConfig:
    """The cluster config at ``path``, or the embedded single-machine default when ``path`` is None."""
    if path is None:
        return parse_config(DEFAULT_CONFIG_TOML)
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    return parse_config(text)


def read_client_config() -> dict[str, Any]:
    """The client config's keys (scheduler, token_file, mgmtd, data_dir); empty when there is none."""
    path = client_config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc
    return parse_toml(text, f"{path}: not valid TOML", ConfigError)
