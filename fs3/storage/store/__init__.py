"""The chunk engine: one directory per target, a file per chunk, a crash-safe SQLite index."""

from fs3.storage.store.engine import ChunkMetaRow, ChunkStore

__all__ = ["ChunkMetaRow", "ChunkStore"]
