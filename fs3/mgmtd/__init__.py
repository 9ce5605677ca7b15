"""mgmtd: cluster membership with heartbeat leases, the chain table and target-state transitions.

``MgmtdService`` (the server) loads lazily, so clients that only need :mod:`fs3.mgmtd.client`
do not import the server's dependencies.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MgmtdService"]


def __getattr__(name: str) -> Any:
    if name == "MgmtdService":
        from fs3.mgmtd.service import MgmtdService

        return MgmtdService
    raise AttributeError(f"module 'fs3.mgmtd' has no attribute {name!r}")
