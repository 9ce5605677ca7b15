"""The native fs3 client: namespace ops through meta, chunk I/O straight to storage in parallel."""

from fs3.client.client import ClientStats, FileStat, FS3Client, StatFs, TargetUsage
from fs3.client.file import FS3File

__all__ = ["ClientStats", "FS3Client", "FS3File", "FileStat", "StatFs", "TargetUsage"]
