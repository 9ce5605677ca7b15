"""Config loading shared by every part: TOML files, integer/float environment variables, client.toml.

Each caller passes the exception class its users expect (``UsageError``, ``InvalidSpec``, ...), so
the messages are the same everywhere and the error stays in the caller's own hierarchy.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

# Where ``haictl up`` points clients (scheduler, token file, mgmtd); HAI_CLIENT_CONFIG overrides it.
CLIENT_CONFIG_PATH = Path("~/.config/fireflyer/client.toml")


def env_int(name: str, default: int | None = None, error: type[Exception] = ValueError) -> int | None:
    """Environment variable ``name`` as an int; ``default`` when unset or empty; else ``error`` naming it."""
    v = os.environ.get(name)
    if not v:
        return default
    try:
        return int(v)
    except ValueError as exc:
        raise error(f"{name}={v!r} is not an integer") from exc


def env_float(name: str, default: float | None = None, error: type[Exception] = ValueError) -> float | None:
    """Environment variable ``name`` as a float; ``default`` when unset or empty; else ``error`` naming it."""
    v = os.environ.get(name)
    if not v:
        return default
    try:
        return float(v)
    except ValueError as exc:
        raise error(f"{name}={v!r} is not a number") from exc


def parse_toml(text: str, where: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """``text`` parsed as TOML; a syntax error raises ``error("WHERE: what is wrong")``."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{where}: {exc}") from exc


def load_toml(path: Path, error: type[Exception] = ValueError) -> dict[str, Any]:
    """The TOML file at ``path`` ({} when it does not exist); a syntax error raises ``error("PATH: ...")``."""
    if not path.exists():
        return {}
    return parse_toml(path.read_text(), str(path), error)


def client_config_path() -> Path:
    """The client config file: ``$HAI_CLIENT_CONFIG``, else ``~/.config/fireflyer/client.toml``."""
    return Path(os.environ.get("HAI_CLIENT_CONFIG") or CLIENT_CONFIG_PATH).expanduser()
