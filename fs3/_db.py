"""One SQL layer over SQLite (WAL, the embedded default) and PostgreSQL (psycopg 3).

SQL is written once with ``?`` placeholders; PostgreSQL gets them rewritten to ``%s``. Read-write
transactions are serializable (SQLite ``BEGIN IMMEDIATE``; PostgreSQL SERIALIZABLE) and retried on
conflict, like FDB transactions in 3FS.
"""

from __future__ import annotations

import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Database:
    """A connection per thread to ``url``: ``sqlite:///path/to.db`` or ``postgresql://...``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_pg = url.startswith(("postgresql://", "postgres://"))
        if not self.is_pg and not url.startswith("sqlite://"):
            raise ValueError(f"--db: unsupported database url {url!r} (sqlite:///path or postgresql://...)")
        self._local = threading.local()

    def _conn(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self.is_pg:
                import psycopg

                conn = psycopg.connect(self.url, autocommit=True)
            else:
                conn = sqlite3.connect(self.url[len("sqlite://") :], timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA foreign_keys=OFF")
            self._local.conn = conn
        return conn

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.is_pg else sql

    def executescript(self, script: str) -> None:
        """Run several ``;``-separated statements (schema creation)."""
        conn = self._conn()
        for stmt in script.split(";"):
            if stmt.strip():
                conn.execute(stmt)

    @contextmanager
    def _txn(self, write: bool) -> Iterator[Cursor]:
        conn = self._conn()
        if self.is_pg:
            conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE" + ("" if write else " READ ONLY"))
        else:
            conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield Cursor(self, conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def run(self, fn: Callable[[Cursor], T], write: bool = True, attempts: int = 50) -> T:
        """Run ``fn(cursor)`` in one transaction, retrying on serialization conflicts/busy."""
        for attempt in range(attempts):
            try:
                with self._txn(write) as cur:
                    return fn(cur)
            except Exception as exc:  # classified below
                if not self._retryable(exc) or attempt == attempts - 1:
                    raise
                time.sleep(min(0.2, 0.002 * 2**attempt) * random.random())
        raise AssertionError("unreachable")

    def _retryable(self, exc: Exception) -> bool:
        if self.is_pg:
            import psycopg.errors as pe

            return isinstance(exc, pe.SerializationFailure | pe.DeadlockDetected | pe.UniqueViolation)
        return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc)

    def close(self) -> None:
        """Close this thread's connection."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class Cursor:
    """Executes SQL inside one transaction."""

    def __init__(self, db: Database, conn: Any) -> None:
        self._db = db
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement and return all its rows (empty for DML without RETURNING)."""
        cur = self._conn.execute(self._db._sql(sql), tuple(params))
        if cur.description is None:
            return []
        return [tuple(r) for r in cur.fetchall()]

    def one(self, sql: str, params: Sequence[Any] = ()) -> tuple | None:
        """The first row or None."""
        rows = self.execute(sql, params)
        return rows[0] if rows else None
