"""The native fs3 client: namespace ops through meta, chunk I/O straight to storage in parallel."""

from fs3.client.client import FileStat, FS3Client, StatFs
from fs3.client.file import FS3File

__all__ = ["FS3Client", "FS3File", "FileStat", "StatFs"]
