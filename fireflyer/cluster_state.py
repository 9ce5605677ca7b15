"""A local cluster's state file (``cluster.json``: every process with its pid) and how later shells find it.

``haictl up`` records the data directory in the client config, so ``down``, ``status`` and ``serve``
find the cluster from any shell; one lock keeps ``serve``, ``down`` and ``up`` from interleaving.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

from fireflyer.config import ClusterConfig, client_config_path, load_config, read_client_config
from fireflyer.errors import FireflyerError
from fireflyer.services import admin_token_file

STATE_FILE = "cluster.json"
CONFIG_FILE = "cluster.toml"
_LOCK_FILE = ".cluster.lock"


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


def read_state(data_dir: Path) -> dict[str, Any]:
    """The state ``up`` wrote for the cluster under ``data_dir``."""
    path = Path(data_dir).expanduser() / STATE_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FireflyerError(f"no cluster state in {path.parent} (was it started with haictl up?)") from None
