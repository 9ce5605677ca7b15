"""What every ``haictl fs`` command shares: finding and reaching the cluster, cluster paths, one-line errors.

Split from ``fs.py`` so each group of verbs (namespace, report, data, mount, bench) imports only this.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from ffcommon.bench import parse_size

_PREFIX = "fs3:"


def resolve_mgmtd(option: str | None) -> str:
    """The mgmtd address from the option, the environment or the client config, or an error saying where it looked."""
    from fireflyer.config import client_config_path, read_client_config
    from fireflyer.errors import ConfigError

    if option:
        return option
    if os.environ.get("FS3_MGMTD"):
        return os.environ["FS3_MGMTD"]
    try:
        data = read_client_config()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from exc
    addr = data.get("mgmtd") or data.get("fs3", {}).get("mgmtd")
    if addr:
        return str(addr)
    where = client_config_path()
    state = "has no mgmtd" if where.exists() else "does not exist"
    raise click.UsageError(
        f"no cluster address: no --mgmtd, FS3_MGMTD is not set and {where} {state}; "
        'run haictl up, pass --mgmtd HOST:PORT, set FS3_MGMTD, or put mgmtd = "host:port" in it'
    )


def _client(ctx: click.Context) -> Any:
    """The ``FS3Client`` of this invocation (connected once, closed with the command).

    A cluster that cannot be reached is reported as one line on stderr and exit status 1.
    """
    obj = ctx.ensure_object(dict)
    if "client" not in obj:
        from fs3.client import FS3Client

        addr = resolve_mgmtd(obj.get("mgmtd"))
        try:
            obj["client"] = FS3Client(addr)
        except OSError as exc:
            click.echo(f"haictl fs: cannot reach the fs3 cluster at {addr}: {_reason(exc)}", err=True)
            sys.exit(1)
        ctx.call_on_close(obj["client"].close)
    return obj["client"]


def _is_remote(p: str) -> bool:
    return p.startswith(_PREFIX)


def _remote(p: str) -> str:
    p = p[len(_PREFIX) :] if _is_remote(p) else p
    if not p.startswith("/"):
        raise click.BadParameter(f"cluster path must be absolute: {p!r}")
    return p


def _reason(exc: BaseException) -> str:
    """``exc`` as a short human message: ``strerror`` for an OSError, ``str`` otherwise."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _fail(exc: BaseException) -> NoReturn:
    """Report ``exc`` as ``haictl fs: PATH: reason`` on stderr (no traceback) and exit with status 1."""
    name = getattr(exc, "filename", None)
    click.echo(f"haictl fs: {name}: {_reason(exc)}" if name else f"haictl fs: {_reason(exc)}", err=True)
    sys.exit(1)


@contextlib.contextmanager
def _reported() -> Iterator[None]:
    """Turn file-system errors (OSError, fs3's FS3Error) raised inside into a one-line failure."""
    try:
        yield
    except OSError as exc:
        _fail(exc)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def _parse_size(s: str) -> int:
    return parse_size(s, click.BadParameter)
