"""fs3: a 3FS-like chunked distributed file service over gRPC.

Public API: :class:`FS3Client` (the native client), :class:`LocalCluster` / :class:`LocalClusterConfig`
(a cluster of real processes on loopback), :mod:`fs3.admin` (a running cluster's chain table,
routing and readiness) and the exceptions in :mod:`fs3.errors`.

``LocalCluster`` and ``LocalClusterConfig`` load on first use, so ``import fs3`` (every client, the FUSE
daemon) does not load the process launcher.
"""

from typing import Any

from fs3 import errors
from fs3.client import FileStat, FS3Client, FS3File, StatFs

__all__ = ["FS3Client", "FS3File", "FileStat", "LocalCluster", "LocalClusterConfig", "StatFs", "errors"]


def __getattr__(name: str) -> Any:  # a class, whichever is asked for
    if name in ("LocalClusterConfig", "LocalCluster"):
        from fs3 import cluster

        return getattr(cluster, name)
    raise AttributeError(f"module 'fs3' has no attribute {name!r}")
