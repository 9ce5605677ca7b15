"""meta: the stateless namespace service over SQLite (WAL) or PostgreSQL."""

from fs3.meta.service import MetaService

__all__ = ["MetaService"]
