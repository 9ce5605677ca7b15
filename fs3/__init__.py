"""fs3: a 3FS-like chunked distributed file service over gRPC.

Public API: :class:`FS3Client` (the native client), :class:`LocalCluster` / :class:`ClusterConfig`
(a cluster of real processes on loopback) and the exceptions in :mod:`fs3.errors`.
"""

from fs3 import errors
from fs3.client import FileStat, FS3Client, FS3File, StatFs
from fs3.cluster import ClusterConfig, LocalCluster

__all__ = ["ClusterConfig", "FS3Client", "FS3File", "FileStat", "LocalCluster", "StatFs", "errors"]
