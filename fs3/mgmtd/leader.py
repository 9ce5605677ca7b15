"""The mgmtd leader lease: one row in the shared database names the instance that leads, until when.

Every mgmtd instance runs a :class:`LeaderLease`. The holder renews the row every ``renew_s``; the
others try to take it every ``renew_s`` and succeed once it has expired (the holder died, froze or
lost the database), so a standby leads within about ``lease_s + renew_s`` of the leader's death.
Expiry is judged by the database's clock (one clock for every instance, also across hosts on
PostgreSQL). Each new holder gets a higher ``epoch``; the holder's writes check it in the same
transaction (:meth:`LeaderLease.fence`), so a leader that was frozen past its lease cannot
overwrite what its successor wrote. Thread-safe: the renew thread and request threads share it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, NamedTuple

SCHEMA = """
CREATE TABLE IF NOT EXISTS mgmtd_leader (
    id INTEGER PRIMARY KEY,
    holder TEXT NOT NULL,
    address TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_s DOUBLE PRECISION NOT NULL
)
"""

# the database's own clock, in seconds since the epoch
_NOW_SQLITE = "SELECT (julianday('now') - 2440587.5) * 86400.0"
_NOW_PG = "SELECT EXTRACT(EPOCH FROM clock_timestamp())::float8"


class NotLeader(Exception):
    """This mgmtd instance does not hold the leader lease (``leader``: the holder's address, or "")."""

    def __init__(self, leader: str) -> None:
        super().__init__(f"not the mgmtd leader; leader is {leader or 'unknown'}")
        self.leader = leader


class LeaderRow(NamedTuple):
    """The ``mgmtd_leader`` row."""

    holder: str
    address: str
    epoch: int
    expires_s: float


class LeaderLease:
    """Leadership of the mgmtd group at ``address``, held as a lease row in ``db``.

    ``on_elected(epoch)`` runs on the renew thread when this instance takes the lease (before
    :meth:`is_leader` turns true, so state can be reloaded first); ``on_deposed()`` when it loses it.
    """

    def __init__(
        self,
        db: Any,
        address: str,
        lease_s: float = 3.0,
        renew_s: float = 0.5,
        on_elected: Callable[[int], None] | None = None,
        on_deposed: Callable[[], None] | None = None,
    ) -> None:
        if not lease_s > 2 * renew_s > 0:
            raise ValueError(f"leader_lease_s: {lease_s} must exceed twice renew_s ({renew_s})")
        self.db = db
        self.address = address
        self.lease_s, self.renew_s = lease_s, renew_s
        self.holder = f"{address}/{os.getpid()}/{uuid.uuid4().hex[:8]}"
        self._on_elected = on_elected or (lambda epoch: None)
        self._on_deposed = on_deposed or (lambda: None)
        self._lock = threading.Lock()
        self._epoch = 0  # > 0 while held
        self._valid_until = 0.0  # monotonic; the lease is ours until then at the latest
        self._leader_address = ""  # the holder as last read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        db.executescript(SCHEMA)

    # ---- queries -----------------------------------------------------------------------------
    def is_leader(self) -> bool:
        """True while this instance holds an unexpired lease (judged by its own monotonic clock)."""
        with self._lock:
            return self._epoch > 0 and time.monotonic() < self._valid_until

    @property
    def epoch(self) -> int:
        """The epoch of the lease this instance holds (0: none)."""
        return self._epoch

    @property
    def leader_address(self) -> str:
        """The address of the leading instance as last read from the database ("" if none)."""
        return self.address if self.is_leader() else self._leader_address

    def check(self) -> None:
        """Raise :class:`NotLeader` unless this instance leads."""
        if not self.is_leader():
            raise NotLeader(self._leader_address)

    def fence(self, cur: Any) -> None:
        """Inside a write transaction: raise :class:`NotLeader` unless the row still names this holder."""
        row = cur.one("SELECT holder, address FROM mgmtd_leader WHERE id = 1")
        if row is None or row[0] != self.holder or not self.is_leader():
            raise NotLeader(row[1] if row else "")

    # ---- the lease -----------------------------------------------------------------------------
    def _now(self, cur: Any) -> float:
        return float(cur.one(_NOW_PG if self.db.is_pg else _NOW_SQLITE)[0])

    def try_acquire(self) -> bool:
        """Take or renew the lease if it is free, expired or ours; True if this instance now holds it."""
        started = time.monotonic()

        def txn(cur: Any) -> tuple[bool, LeaderRow | None, int]:
            now = self._now(cur)
            r = cur.one("SELECT holder, address, epoch, expires_s FROM mgmtd_leader WHERE id = 1")
            row = LeaderRow(r[0], r[1], int(r[2]), float(r[3])) if r else None
            if row is not None and row.holder != self.holder and now < row.expires_s:
                return False, row, 0
            epoch = (
                row.epoch if row is not None and row.holder == self.holder else (row.epoch + 1 if row else 1)
            )
            cur.execute("DELETE FROM mgmtd_leader WHERE id = 1")
            cur.execute(
                "INSERT INTO mgmtd_leader (id, holder, address, epoch, expires_s) VALUES (1, ?, ?, ?, ?)",
                (self.holder, self.address, epoch, now + self.lease_s),
            )
            return True, row, epoch

        try:
            held, row, epoch = self.db.run(txn)
        except Exception as exc:  # the database is away: the lease runs out on its own
            logging.warning("leader lease: database error: %s", exc)
            self._expire_if_due()
            return self.is_leader()
        if not held:
            self._leader_address = row.address if row else ""
            if self._epoch:
                self._depose(f"lease taken by {self._leader_address} (epoch {row.epoch if row else '?'})")
            return False
        was = self._epoch
        if was and was != epoch:  # someone else held it in between: we were deposed unseen
            self._depose("lease lost in between")
            was = 0
        if not was:
            if row is not None and row.holder != self.holder:
                logging.info("leader lease: taking over from %s (epoch %d expired)", row.address, row.epoch)
            self._on_elected(epoch)  # reload state before answering as leader
            logging.info("leader lease: %s leads (epoch %d)", self.address, epoch)
        with self._lock:
            self._epoch = epoch
            # judged from before the transaction began: the database's expiry is later than this
            self._valid_until = started + self.lease_s * 0.9
        self._leader_address = self.address
        return True

    def _expire_if_due(self) -> None:
        with self._lock:
            due = self._epoch and time.monotonic() >= self._valid_until
        if due:
            self._depose("lease expired without renewal")

    def _depose(self, why: str) -> None:
        with self._lock:
            if not self._epoch:
                return
            self._epoch = 0
            self._valid_until = 0.0
        logging.warning("leader lease: %s no longer leads: %s", self.address, why)
        self._on_deposed()

    def start(self) -> None:
        """Try once now, then keep renewing (or trying) every ``renew_s`` on a daemon thread."""
        self.try_acquire()
        self._thread = threading.Thread(target=self._loop, name="leader-lease", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.renew_s):
            try:
                self.try_acquire()
            except Exception:  # keep trying; the next round retries
                logging.exception("leader lease round failed")

    def stop(self, release: bool = True) -> None:
        """Stop renewing; with ``release``, expire our row at once so a standby takes over without waiting."""
        self._stop.set()
        if release and self._epoch:

            def txn(cur: Any) -> None:
                cur.execute(
                    "UPDATE mgmtd_leader SET expires_s = 0 WHERE id = 1 AND holder = ?", (self.holder,)
                )

            try:
                self.db.run(txn)
            except Exception as exc:  # best effort: the lease expires anyway
                logging.warning("leader lease: release failed: %s", exc)
            with self._lock:
                self._epoch = 0
