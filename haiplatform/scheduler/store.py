"""Durable scheduler state: one SQL schema over SQLite (WAL, the default) and PostgreSQL (psycopg 3).

Jobs, their recorded state transitions, nodes, users (hashed tokens) and quotas. Callers hold the
scheduler's lock; each write method is one transaction, so a scheduler killed at any point
restarts from a consistent state.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ffcommon import db

TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})
ACTIVE_STATES = frozenset({"queued", "running", "suspending", "suspended"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id {id},
    name TEXT NOT NULL,
    user_name TEXT NOT NULL,
    group_name TEXT NOT NULL,
    command TEXT NOT NULL,
    workdir TEXT NOT NULL,
    env_json TEXT NOT NULL,
    nodes INTEGER NOT NULL,
    ranks_per_node INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    base_priority INTEGER NOT NULL,
    time_limit_s {real} NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    submitted_at {real} NOT NULL,
    started_at {real} NOT NULL,
    first_started_at {real} NOT NULL,
    finished_at {real} NOT NULL,
    run_seq INTEGER NOT NULL,
    assigned_json TEXT NOT NULL,
    master_addr TEXT NOT NULL,
    master_port INTEGER NOT NULL,
    exit_code INTEGER NOT NULL,
    suspend_count INTEGER NOT NULL,
    hold INTEGER NOT NULL,
    argv_json TEXT NOT NULL DEFAULT '[]',
    depends_json TEXT NOT NULL DEFAULT '[]',
    begin_at {real} NOT NULL DEFAULT 0,
    array_id BIGINT NOT NULL DEFAULT 0,
    array_index INTEGER NOT NULL DEFAULT -1,
    array_limit INTEGER NOT NULL DEFAULT 0,
    used_s {real} NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS transitions (
    tid {id},
    job_id BIGINT NOT NULL,
    at {real} NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_job ON transitions (job_id);
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    slots INTEGER NOT NULL,
    drained INTEGER NOT NULL,
    drain_reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY,
    group_name TEXT NOT NULL,
    is_admin INTEGER NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS usage (
    user_name TEXT PRIMARY KEY,
    node_s {real} NOT NULL,
    at {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS quotas (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    priority INTEGER NOT NULL,
    max_nodes INTEGER NOT NULL,
    PRIMARY KEY (scope, name, priority)
);
"""

_JOB_COLUMNS = (
    "name user_name group_name command workdir env_json nodes ranks_per_node priority base_priority "
    "time_limit_s state reason submitted_at started_at first_started_at finished_at run_seq "
    "assigned_json master_addr master_port exit_code suspend_count hold argv_json depends_json begin_at "
    "array_id array_index array_limit used_s"
).split()
# Columns added after the first release: a database created before them gets them on open.
_ADDED_COLUMNS = {
    "argv_json": "TEXT NOT NULL DEFAULT '[]'", "depends_json": "TEXT NOT NULL DEFAULT '[]'",
    "begin_at": "{real} NOT NULL DEFAULT 0", "array_id": "BIGINT NOT NULL DEFAULT 0",
    "array_index": "INTEGER NOT NULL DEFAULT -1", "array_limit": "INTEGER NOT NULL DEFAULT 0",
    "used_s": "{real} NOT NULL DEFAULT 0",
}  # fmt: skip


def hash_token(token: str) -> str:
    """What the users table stores instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def _job_filter(
    states: Sequence[str], user: str, name: str, since: float = 0.0, until: float = 0.0
) -> tuple[str, list[Any]]:
    """`` WHERE ...`` (or "") and its parameters; ``name`` matches a substring, ASCII case-insensitively;
    ``since``/``until`` bound the submission time (0: unbounded)."""
    where: list[str] = []
    params: list[Any] = []
    if since:
        where.append("submitted_at >= ?")
        params.append(float(since))
    if until:
        where.append("submitted_at < ?")
        params.append(float(until))
    if states:
        where.append(f"state IN ({', '.join('?' * len(states))})")
        params.extend(states)
    if user:
        where.append("user_name = ?")
        params.append(user)
    if name:
        escaped = name.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        where.append("LOWER(name) LIKE ? ESCAPE '\\'")
        params.append(f"%{escaped}%")
    return (" WHERE " + " AND ".join(where)) if where else "", params


def decayed(value: float, age_s: float, half_life_s: float) -> float:
    """``value`` after ``age_s`` of exponential decay with half-life ``half_life_s``."""
    return value * 0.5 ** (max(0.0, age_s) / half_life_s) if half_life_s > 0 else value


@dataclass(slots=True)
class JobRecord:
    """One job row; ``assigned`` lists node names in node-rank order for the current/last run."""

    name: str
    user: str
    group: str
    command: str
    workdir: str
    env: dict[str, str]
    nodes: int
    ranks_per_node: int
    priority: int
    base_priority: int
    time_limit_s: float
    state: str
    reason: str
    submitted_at: float
    started_at: float = 0.0
    first_started_at: float = 0.0
    finished_at: float = 0.0
    run_seq: int = 0
    assigned: list[str] = field(default_factory=list)
    master_addr: str = ""
    master_port: int = 0
    exit_code: int = 0
    suspend_count: int = 0
    hold: bool = False  # held by a user: a queued job is not started, a suspended one not requeued
    job_id: int = 0
    # Exec'd exactly as given (no shell) when non-empty; ``command`` then holds its shell-quoted
    # display form (shlex.join), which is never run.
    argv: list[str] = field(default_factory=list)
    depends: list[tuple[str, int]] = field(default_factory=list)  # (kind, job id), Slurm's --dependency
    begin_at: float = 0.0  # not started before this unix time
    array_id: int = 0  # first task's job id; 0 = not an array task
    array_index: int = -1
    array_limit: int = 0  # at most this many tasks of the array running at once; 0 = no limit
    used_s: float = 0.0  # seconds holding nodes over every ended run
    pending_reason: str = ""  # not stored: filled in by the scheduler when it lists jobs

    def _values(self) -> list[Any]:
        return [
            self.name, self.user, self.group, self.command, self.workdir, json.dumps(self.env),
            self.nodes, self.ranks_per_node, self.priority, self.base_priority, self.time_limit_s,
            self.state, self.reason, self.submitted_at, self.started_at, self.first_started_at,
            self.finished_at, self.run_seq, json.dumps(self.assigned), self.master_addr,
            self.master_port, self.exit_code, self.suspend_count, int(self.hold), json.dumps(self.argv),
            json.dumps(self.depends), self.begin_at, self.array_id, self.array_index, self.array_limit,
            self.used_s,
        ]  # fmt: skip

    @classmethod
    def _from_row(cls, row: Sequence[Any]) -> JobRecord:
        job_id, *vals = row
        d = dict(zip(_JOB_COLUMNS, vals, strict=True))
        return cls(
            name=d["name"], user=d["user_name"], group=d["group_name"], command=d["command"],
            workdir=d["workdir"], env=json.loads(d["env_json"]), nodes=d["nodes"],
            ranks_per_node=d["ranks_per_node"], priority=d["priority"],
            base_priority=d["base_priority"], time_limit_s=d["time_limit_s"], state=d["state"],
            reason=d["reason"], submitted_at=d["submitted_at"], started_at=d["started_at"],
            first_started_at=d["first_started_at"], finished_at=d["finished_at"],
            run_seq=d["run_seq"], assigned=json.loads(d["assigned_json"]),
            master_addr=d["master_addr"], master_port=d["master_port"], exit_code=d["exit_code"],
            suspend_count=d["suspend_count"], hold=bool(d["hold"]), job_id=int(job_id),
            argv=json.loads(d["argv_json"]),
            depends=[(str(k), int(i)) for k, i in json.loads(d["depends_json"])], begin_at=d["begin_at"],
            array_id=int(d["array_id"]), array_index=int(d["array_index"]), array_limit=int(d["array_limit"]),
            used_s=d["used_s"],
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class Transition:
    """One recorded state change."""

    job_id: int
    at: float
    from_state: str
    to_state: str
    reason: str


@dataclass(frozen=True, slots=True)
class User:
    """A user known to the scheduler."""

    name: str
    group: str
    admin: bool


class Store:
    """The scheduler's database: ``Store.open(url)`` (``sqlite:///path``, a file path, or
    ``postgresql://...``; see :mod:`ffcommon.db`), or ``Store.sqlite(path)`` / ``Store.postgres(dsn)``."""

    def __init__(self, conn: Any, dialect: str) -> None:
        self._conn = conn
        self.dialect = dialect
        self._location = ""  # file path or DSN, for reader()
        for stmt in db.ddl(dialect, _SCHEMA):
            self._conn.execute(stmt)
        self._conn.commit()
        self._add_columns()

    def _add_columns(self) -> None:
        """Give a jobs table made by an older release the columns added since (_ADDED_COLUMNS)."""
        cur = self._conn.execute("SELECT * FROM jobs WHERE 1 = 0")
        have = {d[0] for d in cur.description}
        real = "REAL" if self.dialect == "sqlite" else "DOUBLE PRECISION"
        for name, ddl in _ADDED_COLUMNS.items():
            if name not in have:
                self._conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {ddl.format(real=real)}")
        self._conn.commit()

    @classmethod
    def open(cls, url: str, autocommit: bool = False) -> Store:
        """The store at ``url``; ValueError naming ``--db`` for a URL of no supported database."""
        return cls._open(db.parse_url(url), autocommit)

    @classmethod
    def _open(cls, where: db.DbUrl, autocommit: bool = False) -> Store:
        conn = db.connect(where, autocommit=autocommit and where.is_pg, busy_timeout_s=10, shared=True)
        store = cls(conn, where.dialect)
        store._location = where.location
        return store

    @classmethod
    def sqlite(cls, path: str) -> Store:
        """SQLite in WAL mode with synchronous=NORMAL (durable across process crashes)."""
        return cls._open(db.DbUrl(db.SQLITE, path))

    @classmethod
    def postgres(cls, dsn: str, autocommit: bool = False) -> Store:
        """PostgreSQL through psycopg 3 (``pip install psycopg[binary]``)."""
        return cls._open(db.DbUrl(db.POSTGRES, dsn), autocommit)

    def reader(self) -> Store:
        """A second connection to the same database for reads (the status page's job pages and
        counts), so they neither wait for nor hold up the scheduler's lock; the caller closes it."""
        if not self._location or self._location == ":memory:":
            raise ValueError("reader: only a store opened from a file or DSN can be opened twice")
        if self.dialect == db.SQLITE:
            return Store.sqlite(self._location)  # WAL: readers run beside the writer
        return Store.postgres(self._location, autocommit=True)  # no transaction left open between reads

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    # -- helpers ----------------------------------------------------------------------------
    def _sql(self, sql: str) -> str:
        return db.placeholders(self.dialect, sql)

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._sql(sql), tuple(params))

    def _commit(self) -> None:
        self._conn.commit()

    # -- jobs -------------------------------------------------------------------------------
    def insert_job(self, job: JobRecord, at: float, reason: str) -> int:
        """Store a new job and its first transition; sets and returns ``job.job_id``."""
        try:
            cur = self._execute(
                f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))}) RETURNING id",
                job._values(),
            )
            job.job_id = int(cur.fetchone()[0])
            self._execute(
                "INSERT INTO transitions (job_id, at, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?)",
                (job.job_id, at, "", job.state, reason),
            )
            self._commit()
        except Exception:
            self._conn.rollback()
            raise
        return job.job_id

    def insert_array(self, tasks: Sequence[JobRecord], at: float, reason: str) -> list[int]:
        """Store an array's tasks in one transaction; each task's ``array_id`` becomes the first's id."""
        cols = ", ".join(_JOB_COLUMNS)
        marks = ", ".join("?" * len(_JOB_COLUMNS))
        try:
            for i, job in enumerate(tasks):
                cur = self._execute(f"INSERT INTO jobs ({cols}) VALUES ({marks}) RETURNING id", job._values())
                job.job_id = int(cur.fetchone()[0])
                if i == 0:
                    for t in tasks:
                        t.array_id = job.job_id
                    self._execute("UPDATE jobs SET array_id = ? WHERE id = ?", (job.job_id, job.job_id))
                self._execute(
                    "INSERT INTO transitions (job_id, at, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?)",
                    (job.job_id, at, "", job.state, reason),
                )
            self._commit()
        except Exception:
            self._conn.rollback()
            raise
        return [t.job_id for t in tasks]

    def update_job(self, job: JobRecord, transitions: Iterable[Transition] = ()) -> None:
        """Write the job's row and any transitions in one transaction."""
        try:
            sets = ", ".join(f"{c} = ?" for c in _JOB_COLUMNS)
            self._execute(f"UPDATE jobs SET {sets} WHERE id = ?", [*job._values(), job.job_id])
            for t in transitions:
                self._execute(
                    "INSERT INTO transitions (job_id, at, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?)",
                    (t.job_id, t.at, t.from_state, t.to_state, t.reason),
                )
            self._commit()
        except Exception:
            self._conn.rollback()
            raise

    def get_job(self, job_id: int) -> JobRecord | None:
        """The job, or None."""
        row = self._execute(
            f"SELECT id, {', '.join(_JOB_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)
        ).fetchone()
        return JobRecord._from_row(row) if row else None

    def list_jobs(
        self,
        states: Sequence[str] = (),
        user: str = "",
        limit: int = 1000,
        name: str = "",
        offset: int = 0,
        since: float = 0.0,
        until: float = 0.0,
    ) -> list[JobRecord]:
        """Jobs newest first, filtered by state, user, name substring and submission time; ``offset`` skips."""
        where, params = _job_filter(states, user, name, since, until)
        sql = f"SELECT id, {', '.join(_JOB_COLUMNS)} FROM jobs{where} ORDER BY id DESC LIMIT ? OFFSET ?"
        rows = self._execute(sql, [*params, int(limit), int(offset)]).fetchall()
        return [JobRecord._from_row(r) for r in rows]

    def array_tasks(self, array_id: int) -> list[JobRecord]:
        """Every task of an array, by index."""
        rows = self._execute(
            f"SELECT id, {', '.join(_JOB_COLUMNS)} FROM jobs WHERE array_id = ? ORDER BY array_index",
            (array_id,),
        ).fetchall()
        return [JobRecord._from_row(r) for r in rows]

    def count_jobs(self, user: str = "", name: str = "") -> dict[str, int]:
        """How many jobs are in each state (states with none are left out), same filters as list_jobs."""
        where, params = _job_filter((), user, name)
        rows = self._execute(f"SELECT state, COUNT(*) FROM jobs{where} GROUP BY state", params).fetchall()
        return {str(r[0]): int(r[1]) for r in rows}

    def active_jobs(self) -> list[JobRecord]:
        """Every job not yet completed, failed or cancelled (what a restarted scheduler reloads)."""
        return self.list_jobs(sorted(ACTIVE_STATES), limit=10**9)

    def transitions(self, job_id: int) -> list[Transition]:
        """The job's history, oldest first."""
        rows = self._execute(
            "SELECT job_id, at, from_state, to_state, reason FROM transitions WHERE job_id = ? ORDER BY at, tid",
            (job_id,),
        ).fetchall()
        return [Transition(int(r[0]), r[1], r[2], r[3], r[4]) for r in rows]

    # -- nodes ------------------------------------------------------------------------------
    def save_node(self, name: str, slots: int, drained: bool, drain_reason: str) -> None:
        """Insert or update a node's durable fields (liveness is not stored: agents re-report it)."""
        self._execute(
            "INSERT INTO nodes VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "slots = excluded.slots, drained = excluded.drained, drain_reason = excluded.drain_reason",
            (name, slots, int(drained), drain_reason),
        )
        self._commit()

    def load_nodes(self) -> list[tuple[str, int, bool, str]]:
        """(name, slots, drained, drain reason) of every node ever registered."""
        rows = self._execute("SELECT name, slots, drained, drain_reason FROM nodes ORDER BY name").fetchall()
        return [(r[0], int(r[1]), bool(r[2]), r[3]) for r in rows]

    # -- users and quotas ------------------------------------------------------------------------
    def add_user(self, name: str, group: str, admin: bool, token: str) -> None:
        """Create or replace a user with a new token."""
        self._execute(
            "INSERT INTO users VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "group_name = excluded.group_name, is_admin = excluded.is_admin, token_sha256 = excluded.token_sha256",
            (name, group, int(admin), hash_token(token)),
        )
        self._commit()

    def user_by_token(self, token: str) -> User | None:
        """The user holding ``token``, or None."""
        row = self._execute(
            "SELECT name, group_name, is_admin FROM users WHERE token_sha256 = ?", (hash_token(token),)
        ).fetchone()
        return User(row[0], row[1], bool(row[2])) if row else None

    def user(self, name: str) -> User | None:
        """The user called ``name``, or None."""
        row = self._execute("SELECT name, group_name, is_admin FROM users WHERE name = ?", (name,)).fetchone()
        return User(row[0], row[1], bool(row[2])) if row else None

    def set_quota(self, scope: str, name: str, priority: int, max_nodes: int) -> None:
        """Set (max_nodes >= 0) or remove (max_nodes < 0) a node quota."""
        self._execute(
            "DELETE FROM quotas WHERE scope = ? AND name = ? AND priority = ?", (scope, name, priority)
        )
        if max_nodes >= 0:
            self._execute("INSERT INTO quotas VALUES (?, ?, ?, ?)", (scope, name, priority, max_nodes))
        self._commit()

    def add_usage(self, user: str, node_s: float, at: float, half_life_s: float) -> float:
        """Decay ``user``'s stored usage to ``at`` and add ``node_s``; returns the new value."""
        row = self._execute("SELECT node_s, at FROM usage WHERE user_name = ?", (user,)).fetchone()
        old = decayed(row[0], at - row[1], half_life_s) if row else 0.0
        self._execute(
            "INSERT INTO usage VALUES (?, ?, ?) ON CONFLICT (user_name) DO UPDATE SET "
            "node_s = excluded.node_s, at = excluded.at",
            (user, old + node_s, at),
        )
        self._commit()
        return old + node_s

    def usage(self) -> dict[str, tuple[float, float]]:
        """Every user's stored usage: {user: (node-seconds, as of unix time)}."""
        rows = self._execute("SELECT user_name, node_s, at FROM usage").fetchall()
        return {r[0]: (float(r[1]), float(r[2])) for r in rows}

    def quotas(self) -> dict[tuple[str, str, int], int]:
        """Every quota as {(scope, name, priority or 0): max_nodes}."""
        rows = self._execute("SELECT scope, name, priority, max_nodes FROM quotas").fetchall()
        return {(r[0], r[1], int(r[2])): int(r[3]) for r in rows}
