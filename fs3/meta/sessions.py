"""Open-file sessions and client leases of the meta store (a mixin of ``MetaStore``).

Every open holds a session; a client renews one lease for all of its sessions. When a lease runs
out, ``expire_leases`` ends that client's sessions and turns the unlinked inodes nothing else holds
into orphans, whose chunks ``fs3.meta.gc`` removes.
"""

from __future__ import annotations

import time

from ffcommon.db import Cursor
from fs3 import errors as E
from fs3.meta.rows import Orphan


class SessionOps:
    """Leases and orphans; needs ``db``, ``lease_s``, ``_row`` and ``_delete_inode`` of ``MetaStore``."""

    def _renew(self, cur: Cursor, client_id: str) -> None:
        until = time.time_ns() + int(self.lease_s * 1e9)
        cur.execute(
            "INSERT INTO meta_clients VALUES (?, ?) ON CONFLICT (client) DO UPDATE SET lease_until_ns = ?",
            (client_id, until, until),
        )

    def renew_lease(self, client_id: str) -> tuple[float, int]:
        """Extend every session of ``client_id`` by ``lease_s``; (lease_s, sessions it holds)."""
        if not client_id:
            raise E.InvalidArgument("client_id", "empty")

        def fn(cur: Cursor) -> tuple[float, int]:
            self._renew(cur, client_id)
            n = cur.one("SELECT COUNT(*) FROM meta_sessions WHERE client = ?", (client_id,))
            return self.lease_s, int(n[0]) if n else 0

        return self.db.run(fn)

    def expire_leases(self, now_ns: int | None = None) -> int:
        """End the sessions of clients whose lease ran out; inodes nothing holds become orphans.

        Returns how many sessions ended."""
        now = time.time_ns() if now_ns is None else now_ns

        def fn(cur: Cursor) -> int:
            dead = [
                r[0] for r in cur.execute("SELECT client FROM meta_clients WHERE lease_until_ns < ?", (now,))
            ]
            ended = 0
            for client in dead:
                inodes = {
                    r[0] for r in cur.execute("SELECT inode FROM meta_sessions WHERE client = ?", (client,))
                }
                n = cur.one("SELECT COUNT(*) FROM meta_sessions WHERE client = ?", (client,))
                ended += int(n[0]) if n else 0
                cur.execute("DELETE FROM meta_sessions WHERE client = ?", (client,))
                cur.execute("DELETE FROM meta_clients WHERE client = ?", (client,))
                for iid in sorted(inodes):
                    row = self._row(cur, iid)
                    if row is None or row.nlink > 0:
                        continue
                    if cur.one("SELECT id FROM meta_sessions WHERE inode = ? LIMIT 1", (iid,)):
                        continue
                    self._delete_inode(cur, iid)
                    cur.execute(
                        "INSERT INTO meta_orphans VALUES (?, ?, ?) ON CONFLICT (inode) DO NOTHING",
                        (iid, row.chains, row.chunk_size),
                    )
            return ended

        return self.db.run(fn)

    def orphans(self, limit: int = 100) -> list[Orphan]:
        """Inodes freed by lease expiry whose chunks are not removed yet."""

        def fn(cur: Cursor) -> list[Orphan]:
            rows = cur.execute(
                "SELECT inode, chains, chunk_size FROM meta_orphans ORDER BY inode LIMIT ?", (limit,)
            )
            return [Orphan(i, [int(c) for c in ch.split(",") if c], cs) for i, ch, cs in rows]

        return self.db.run(fn, write=False)

    def orphan_removed(self, inode_id: int) -> None:
        """The chunks of orphan ``inode_id`` are gone."""
        self.db.run(lambda cur: cur.execute("DELETE FROM meta_orphans WHERE inode = ?", (inode_id,)))
