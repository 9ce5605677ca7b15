"""The native fs3 client: namespace ops through meta, chunk I/O straight to storage in parallel."""

from fs3.client.client import FS3Client
from fs3.client.file import FS3File
from fs3.client.types import ClientStats, FileStat, StatFs, TargetUsage

__all__ = ["ClientStats", "FS3Client", "FS3File", "FileStat", "StatFs", "TargetUsage"]
