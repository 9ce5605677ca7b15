"""The scheduler service (gRPC), its pure policy and its SQL store.

Names are imported on first use (PEP 562), so that clients importing ``jobspec`` or ``policy``
do not load the server, its store and its metrics (``haictl submit`` must start fast).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SchedulerConfig": "core", "SchedulerCore": "core",
    "Decisions": "policy", "NodeView": "policy", "PolicyConfig": "policy", "Priority": "policy",
    "QueuedJob": "policy", "RunningJob": "policy", "schedule": "policy",
    "serve": "service", "JobRecord": "store", "Store": "store",
}  # fmt: skip

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
