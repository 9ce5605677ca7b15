"""storage: the chunk service with CRAQ chain replication and resync."""

from fs3.storage.service import StorageService

__all__ = ["StorageService"]
