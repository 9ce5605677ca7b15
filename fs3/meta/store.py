"""The meta store: inodes and directory entries as in 3FS, in one SQL schema for SQLite and PostgreSQL.

Every operation is one serializable transaction (retried on conflict). Paths are resolved here, with
owner/mode checks on every traversed directory; uid 0 bypasses permission checks. The gRPC servicer
(``fs3.meta.service``) only decodes requests, calls these methods and maps errors to statuses.

The schema and row types are in ``rows.py``, sessions and leases in ``sessions.py``, extended
attributes in ``xattrs.py`` (mixins of ``MetaStore``). Over 500 lines because every namespace
operation shares one transaction, the path resolution and the row type.
"""

from __future__ import annotations

import os
import random
import stat as _stat
import time
from collections.abc import Callable

from ffcommon.db import Cursor, Database
from fs3 import errors as E
from fs3.meta.rows import (  # noqa: F401 - re-exported: the store's public names
    _INSERT_INODE,
    BLK,
    CHR,
    COLS,
    DEFAULT_LEASE_S,
    DEFAULT_MAX_FILE_SIZE,
    DIR,
    FIFO,
    FILE,
    NAME_MAX,
    NOW,
    PATH_LIMIT,
    PATH_MAX,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    ROOT_ID,
    SCHEMA,
    SOCK,
    SPECIAL,
    SYMLINK,
    SYMLOOP_MAX,
    InodeRow,
    Listed,
    Opened,
    Orphan,
    Removed,
    allowed,
    check,
    split_path,
)
from fs3.meta.sessions import SessionOps
from fs3.meta.xattrs import XattrOps
from fs3.protos import common_pb2 as cpb
from fs3.protos import meta_pb2 as pb


class MetaStore(SessionOps, XattrOps):
    """The namespace in ``db_url``; ``routing`` returns mgmtd's routing info (chains, chunk size)."""

    def __init__(
        self, db_url: str, routing: Callable[[], cpb.RoutingInfo], lease_s: float = DEFAULT_LEASE_S
    ) -> None:
        self.db = Database(db_url)
        self._routing = routing
        self.lease_s = lease_s
        self.db.executescript(SCHEMA)
        self._check_schema()
        self.db.run(self._init_root)

    def _check_schema(self) -> None:
        """Refuse a database written before timestamps became integer nanoseconds, naming the fix."""
        try:
            self.db.run(lambda cur: cur.one(f"SELECT {COLS} FROM meta_inodes LIMIT 1"), write=False)
        except Exception as exc:  # sqlite3/psycopg raise different classes
            raise RuntimeError(
                f"{self.db.url}: meta_inodes has an older schema ({exc}); this fs3 stores *_ns timestamps: "
                "start from a fresh database (there is no in-place migration)"
            ) from exc

    # ---- rows --------------------------------------------------------------------------------
    @staticmethod
    def _init_root(cur: Cursor) -> None:
        if cur.one("SELECT id FROM meta_inodes WHERE id = ?", (ROOT_ID,)) is None:
            now = time.time_ns()
            root = InodeRow(ROOT_ID, DIR, 0o755, 0, 0, 2, 0, now, now, now, 0, 0, "", 0, "", ROOT_ID, 0)
            cur.execute(_INSERT_INODE, root)
        if cur.one("SELECT value FROM meta_counters WHERE name = 'inode'") is None:
            cur.execute("INSERT INTO meta_counters VALUES ('inode', ?)", (ROOT_ID,))
            cur.execute("INSERT INTO meta_counters VALUES ('session', 0)")

    @staticmethod
    def _next(cur: Cursor, name: str) -> int:
        row = cur.one("UPDATE meta_counters SET value = value + 1 WHERE name = ? RETURNING value", (name,))
        assert row is not None
        return int(row[0])

    @staticmethod
    def _row(cur: Cursor, inode_id: int) -> InodeRow | None:
        row = cur.one(f"SELECT {COLS} FROM meta_inodes WHERE id = ?", (inode_id,))
        return InodeRow(*row) if row is not None else None

    # ---- path resolution ---------------------------------------------------------------------
    def _resolve(
        self, cur: Cursor, user: pb.User, path: str, follow: bool = True
    ) -> tuple[InodeRow, InodeRow | None, str]:
        """Resolve ``path`` to (parent dir row, target row or None, last name); checks search permission."""
        parts = split_path(path)
        root = self._row(cur, ROOT_ID)
        assert root is not None
        if not parts:
            return root, root, ""
        stack: list[InodeRow] = [root]
        todo = list(parts)
        hops = 0
        while True:
            name = todo.pop(0)
            d = stack[-1]
            if d.type != DIR:
                raise E.NotADirectory(path, "a path component is not a directory")
            check(d, user, os.X_OK, path)
            if name == "..":  # only from symlink targets
                if len(stack) > 1:
                    stack.pop()
                continue
            ent = cur.one("SELECT inode FROM meta_dentries WHERE parent = ? AND name = ?", (d.id, name))
            row = self._row(cur, ent[0]) if ent else None
            last = not todo
            if row is not None and row.type == SYMLINK and (not last or follow):
                hops += 1
                if hops > SYMLOOP_MAX:
                    raise E.TooManyLinks(path, "too many levels of symbolic links")
                target = row.symlink
                tparts = [p for p in target.split("/") if p and p != "."]
                if target.startswith("/"):
                    stack = stack[:1]
                todo = tparts + todo
                if not todo:
                    return stack[-2] if len(stack) > 1 else stack[0], stack[-1], ""
                continue
            if last:
                return d, row, name
            if row is None:
                raise E.NotFound(path, "no such file or directory")
            stack.append(row)

    def _existing(self, cur: Cursor, user: pb.User, path: str, follow: bool = True) -> InodeRow:
        """The row ``path`` names; NotFound if none."""
        _, row, _ = self._resolve(cur, user, path, follow=follow)
        if row is None:
            raise E.NotFound(path, "no such file or directory")
        return row

    # ---- layout and creation -----------------------------------------------------------------
    def _file_layout(self, parent: InodeRow, inode_id: int) -> tuple[int, int, str, int]:
        routing = self._routing()
        chain_ids = [c.chain_id for c in routing.chains]
        chunk_size = parent.chunk_size or routing.chunk_size
        stripe = min(parent.stripe or routing.stripe or len(chain_ids), len(chain_ids))
        start = (inode_id * stripe) % len(chain_ids)  # round-robin over the table
        picked = [chain_ids[(start + i) % len(chain_ids)] for i in range(stripe)]
        seed = random.getrandbits(62)
        random.Random(seed).shuffle(picked)  # 3FS: shuffled by a per-file seed
        return chunk_size, stripe, ",".join(map(str, picked)), seed

    def _new_inode(
        self,
        cur: Cursor,
        user: pb.User,
        parent: InodeRow,
        name: str,
        typ: int,
        mode: int,
        symlink: str = "",
        rdev: int = 0,
    ) -> InodeRow:
        iid = self._next(cur, "inode")
        now = time.time_ns()
        if typ == FILE:
            chunk_size, stripe, chains, seed = self._file_layout(parent, iid)
        elif typ == DIR:
            chunk_size, stripe, chains, seed = parent.chunk_size, parent.stripe, "", 0
        else:
            chunk_size, stripe, chains, seed = 0, 0, "", 0
        gid = parent.gid if parent.mode & _stat.S_ISGID else user.gid
        if typ == DIR and parent.mode & _stat.S_ISGID:
            mode |= _stat.S_ISGID  # as on Linux: subdirectories of a set-gid directory inherit the bit
        row = InodeRow(
            iid, typ, mode & 0o7777, user.uid, gid, 2 if typ == DIR else 1, len(symlink.encode()), now, now, now,
            chunk_size, stripe, chains, seed, symlink, parent.id if typ == DIR else 0, rdev,
        )  # fmt: skip
        cur.execute(_INSERT_INODE, row)
        cur.execute("INSERT INTO meta_dentries VALUES (?, ?, ?, ?)", (parent.id, name, iid, typ))
        cur.execute(
            "UPDATE meta_inodes SET mtime_ns = ?, ctime_ns = ?, nlink = nlink + ? WHERE id = ?",
            (now, now, 1 if typ == DIR else 0, parent.id),
        )
        return row

    def _parent_for_create(
        self, cur: Cursor, user: pb.User, path: str, follow: bool = False
    ) -> tuple[InodeRow, str]:
        parent, row, name = self._resolve(cur, user, path, follow=follow)
        if not name:
            raise E.AlreadyExists(path, "file exists")
        if row is not None:
            raise E.AlreadyExists(path, "file exists")
        check(parent, user, os.W_OK | os.X_OK, path)
        return parent, name

    def max_file_size(self) -> int:
        """Mgmtd's max file size in bytes (1 TiB when unknown)."""
        try:
            return self._routing().max_file_size or DEFAULT_MAX_FILE_SIZE
        except E.FS3Error:
            return DEFAULT_MAX_FILE_SIZE

    # ---- operations --------------------------------------------------------------------------
    def stat(self, user: pb.User, path: str, follow: bool) -> InodeRow:
        """The inode ``path`` names (following a final symlink if ``follow``)."""
        return self.db.run(lambda cur: self._existing(cur, user, path, follow=follow), write=False)

    def stat_inode(self, inode_id: int) -> InodeRow:
        """The inode with id ``inode_id``; NotFound if it is gone."""

        def fn(cur: Cursor) -> InodeRow:
            row = self._row(cur, inode_id)
            if row is None:
                raise E.NotFound(f"inode {inode_id}", "no such inode")
            return row

        return self.db.run(fn, write=False)

    def mkdir(
        self, user: pb.User, path: str, mode: int | None, parents: bool, chunk_size: int = 0, stripe: int = 0
    ) -> InodeRow:
        """Create directory ``path`` (and missing ancestors if ``parents``) with exactly ``mode`` (None:
        0755); layout overrides if non-zero."""

        def fn(cur: Cursor) -> InodeRow:
            parts = split_path(path)
            if not parts:
                if parents:
                    return self._row(cur, ROOT_ID)  # type: ignore[return-value]
                raise E.AlreadyExists("/", "file exists")
            prefixes = ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))] if parents else [path]
            row = None
            for p in prefixes:
                parent, row, name = self._resolve(cur, user, p, follow=True)
                if row is not None:
                    if row.type != DIR or not parents:
                        raise E.AlreadyExists(p, "file exists")
                    continue
                check(parent, user, os.W_OK | os.X_OK, p)
                row = self._new_inode(cur, user, parent, name, DIR, 0o755 if mode is None else mode & 0o1777)
                if chunk_size or stripe:
                    cur.execute(
                        "UPDATE meta_inodes SET chunk_size = ?, stripe = ? WHERE id = ?",
                        (chunk_size or row.chunk_size, stripe or row.stripe, row.id),
                    )
                    row = self._row(cur, row.id)
            assert row is not None
            return row

        return self.db.run(fn)

    def open(self, user: pb.User, path: str, flags: int, mode: int | None, client_id: str) -> Opened:
        """Open (or with O_CREAT create, with exactly ``mode``; None: 0644) a file; a writing open gets a
        session that Close ends."""
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR))

        def fn(cur: Cursor) -> Opened:
            parent, row, name = self._resolve(cur, user, path, follow=True)
            truncated, old_size = False, 0
            if row is None:
                if not flags & os.O_CREAT:
                    raise E.NotFound(path, "no such file or directory")
                if not name:
                    raise E.IsADirectory(path, "is a directory")
                check(parent, user, os.W_OK | os.X_OK, path)
                row = self._new_inode(cur, user, parent, name, FILE, 0o644 if mode is None else mode)
            else:
                if flags & os.O_CREAT and flags & os.O_EXCL:
                    raise E.AlreadyExists(path, "file exists")
                if row.type == DIR:
                    raise E.IsADirectory(path, "is a directory")
                if row.type in SPECIAL:
                    raise E.NotPermitted(
                        path, "a FIFO, socket or device node has no data in fs3 (open it on a mount)"
                    )
                # O_TRUNC needs write permission and truncates even with O_RDONLY, as on Linux
                want = (os.W_OK if writing or flags & os.O_TRUNC else 0) | (
                    os.R_OK if not (flags & os.O_WRONLY) else 0
                )
                check(row, user, want, path)
                if flags & os.O_TRUNC and row.size > 0:
                    truncated, old_size = True, row.size
                    now = time.time_ns()
                    cur.execute(
                        "UPDATE meta_inodes SET size = 0, mtime_ns = ?, ctime_ns = ? WHERE id = ?",
                        (now, now, row.id),
                    )
                    row = self._row(cur, row.id)
                    assert row is not None
            session = self._next(cur, "session")  # readers too: the inode outlives its last name for them
            cur.execute(
                "INSERT INTO meta_sessions VALUES (?, ?, ?, ?)", (session, row.id, client_id, time.time())
            )
            self._renew(cur, client_id)
            return Opened(row, session, truncated, old_size, self.lease_s)

        return self.db.run(fn)

    def close(self, inode_id: int, session_id: int, length: int, wrote: bool) -> tuple[InodeRow, bool]:
        """Report the written length (size = max(size, length)) and end ``session_id`` (0: keep it).

        Returns the inode and whether this was the last hold on an unlinked one (its chunks must go)."""
        max_size = self.max_file_size()

        def fn(cur: Cursor) -> tuple[InodeRow, bool]:
            row = self._row(cur, inode_id)
            if row is None or row.type != FILE:
                raise E.NotFound(f"inode {inode_id}", "no such file inode")
            if length > max_size:
                raise E.FileTooLarge(f"inode {inode_id}", f"length {length} > max file size {max_size}")
            now = time.time_ns()
            if length > row.size or wrote:
                cur.execute(
                    "UPDATE meta_inodes SET size = ?, mtime_ns = ?, ctime_ns = ? WHERE id = ?",
                    (
                        max(row.size, length),
                        now if wrote else row.mtime_ns,
                        now if wrote else row.ctime_ns,
                        row.id,
                    ),
                )
            if session_id:
                cur.execute("DELETE FROM meta_sessions WHERE id = ? AND inode = ?", (session_id, row.id))
                left = cur.one("SELECT COUNT(*) FROM meta_sessions WHERE inode = ?", (row.id,))
                if row.nlink == 0 and left and int(left[0]) == 0:  # unlinked while open: free it now
                    self._delete_inode(cur, row.id)
                    return row, True
            return self._row(cur, row.id), False  # type: ignore[return-value]

        return self.db.run(fn)

    def list(self, user: pb.User, path: str, with_inodes: bool) -> list[Listed]:
        """The entries of directory ``path``, sorted by name; with their inodes if ``with_inodes``."""

        def fn(cur: Cursor) -> list[Listed]:
            row = self._existing(cur, user, path)
            if row.type != DIR:
                raise E.NotADirectory(path, "not a directory")
            check(row, user, os.R_OK, path)
            if with_inodes:
                cols = ", ".join(f"i.{c}" for c in InodeRow._fields)
                rows = cur.execute(
                    f"SELECT d.name, {cols} FROM meta_dentries d JOIN meta_inodes i ON i.id = d.inode "
                    "WHERE d.parent = ? ORDER BY d.name",
                    (row.id,),
                )
                return [Listed(r[0], r[1], r[2], InodeRow(*r[1:])) for r in rows]
            rows = cur.execute(
                "SELECT name, inode, type FROM meta_dentries WHERE parent = ? ORDER BY name", (row.id,)
            )
            return [Listed(n, i, t) for n, i, t in rows]

        return self.db.run(fn, write=False)

    @staticmethod
    def _delete_inode(cur: Cursor, inode_id: int) -> None:
        cur.execute("DELETE FROM meta_inodes WHERE id = ?", (inode_id,))
        cur.execute("DELETE FROM meta_xattrs WHERE inode = ?", (inode_id,))

    def _drop_link(self, cur: Cursor, row: InodeRow) -> bool:
        """Decrement a non-directory inode's link count; delete it if unreferenced. True if freed."""
        now = time.time_ns()
        if row.nlink > 1:
            cur.execute("UPDATE meta_inodes SET nlink = nlink - 1, ctime_ns = ? WHERE id = ?", (now, row.id))
            return False
        sessions = cur.one("SELECT COUNT(*) FROM meta_sessions WHERE inode = ?", (row.id,))
        if sessions and int(sessions[0]) > 0:
            cur.execute("UPDATE meta_inodes SET nlink = 0, ctime_ns = ? WHERE id = ?", (now, row.id))
            return False
        self._delete_inode(cur, row.id)
        return row.type == FILE

    def _inside(self, cur: Cursor, d: InodeRow, ancestor_id: int) -> bool:
        """Whether directory ``d`` is ``ancestor_id`` or lies below it."""
        while True:
            if d.id == ancestor_id:
                return True
            if d.id == ROOT_ID:
                return False
            d = self._row(cur, d.parent)  # type: ignore[assignment]

    def rename(self, user: pb.User, src: str, dst: str, flags: int = 0) -> Removed:
        """Move ``src`` to ``dst`` atomically, replacing a compatible ``dst``; returns what it replaced.

        ``flags`` as renameat2(2): RENAME_NOREPLACE fails with EEXIST if ``dst`` exists;
        RENAME_EXCHANGE swaps two existing entries of any types."""
        if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == RENAME_NOREPLACE | RENAME_EXCHANGE:
            raise E.InvalidArgument("flags", f"rename flags {flags:#x}: only NOREPLACE (1) or EXCHANGE (2)")

        def fn(cur: Cursor) -> Removed:
            sparent, srow, sname = self._resolve(cur, user, src, follow=False)
            if not sname:
                raise E.InvalidArgument(src, "cannot rename the root")
            if srow is None:
                raise E.NotFound(src, "no such file or directory")
            dparent, drow, dname = self._resolve(cur, user, dst, follow=False)
            if not dname:
                raise E.InvalidArgument(dst, "cannot replace the root")
            check(sparent, user, os.W_OK | os.X_OK, src)
            check(dparent, user, os.W_OK | os.X_OK, dst)
            if drow is not None and flags & RENAME_NOREPLACE:
                raise E.AlreadyExists(dst, "file exists")
            if drow is None and flags & RENAME_EXCHANGE:
                raise E.NotFound(dst, "no such file or directory")
            if srow.type == DIR and dparent.id != sparent.id and self._inside(cur, dparent, srow.id):
                raise E.InvalidArgument(dst, "cannot move a directory into itself")
            now = time.time_ns()
            if drow is not None and drow.id == srow.id:
                return Removed(None, False)
            if flags & RENAME_EXCHANGE:
                assert drow is not None
                if drow.type == DIR and dparent.id != sparent.id and self._inside(cur, sparent, drow.id):
                    raise E.InvalidArgument(src, "cannot move a directory into itself")
                self._set_entry(cur, sparent.id, sname, drow)
                self._set_entry(cur, dparent.id, dname, srow)
                if dparent.id != sparent.id:
                    for row, old, new in ((srow, sparent.id, dparent.id), (drow, dparent.id, sparent.id)):
                        if row.type == DIR:
                            self._move_dir(cur, row.id, old, new)
                cur.execute("UPDATE meta_inodes SET ctime_ns = ? WHERE id IN (?, ?)", (now, srow.id, drow.id))
                cur.execute(
                    "UPDATE meta_inodes SET mtime_ns = ?, ctime_ns = ? WHERE id IN (?, ?)",
                    (now, now, sparent.id, dparent.id),
                )
                return Removed(None, False)
            removed = Removed(None, False)
            if drow is not None:
                if srow.type == DIR and drow.type != DIR:
                    raise E.NotADirectory(dst, "not a directory")
                if srow.type != DIR and drow.type == DIR:
                    raise E.IsADirectory(dst, "is a directory")
                freed = False
                if drow.type == DIR:
                    if cur.one("SELECT name FROM meta_dentries WHERE parent = ? LIMIT 1", (drow.id,)):
                        raise E.DirectoryNotEmpty(dst, "directory not empty")
                    self._delete_inode(cur, drow.id)
                    cur.execute("UPDATE meta_inodes SET nlink = nlink - 1 WHERE id = ?", (dparent.id,))
                else:
                    freed = self._drop_link(cur, drow)
                removed = Removed(drow, freed)
                cur.execute("DELETE FROM meta_dentries WHERE parent = ? AND name = ?", (dparent.id, dname))
            cur.execute("DELETE FROM meta_dentries WHERE parent = ? AND name = ?", (sparent.id, sname))
            cur.execute(
                "INSERT INTO meta_dentries VALUES (?, ?, ?, ?)", (dparent.id, dname, srow.id, srow.type)
            )
            if srow.type == DIR and dparent.id != sparent.id:
                self._move_dir(cur, srow.id, sparent.id, dparent.id)
            cur.execute("UPDATE meta_inodes SET ctime_ns = ? WHERE id = ?", (now, srow.id))
            cur.execute(
                "UPDATE meta_inodes SET mtime_ns = ?, ctime_ns = ? WHERE id IN (?, ?)",
                (now, now, sparent.id, dparent.id),
            )
            return removed

        return self.db.run(fn)

    @staticmethod
    def _set_entry(cur: Cursor, parent_id: int, name: str, row: InodeRow) -> None:
        """Point the existing entry ``name`` of ``parent_id`` at ``row``."""
        cur.execute(
            "UPDATE meta_dentries SET inode = ?, type = ? WHERE parent = ? AND name = ?",
            (row.id, row.type, parent_id, name),
        )

    @staticmethod
    def _move_dir(cur: Cursor, dir_id: int, old_parent: int, new_parent: int) -> None:
        """Directory ``dir_id`` moved from ``old_parent`` to ``new_parent``: fix its '..' and the link counts."""
        cur.execute("UPDATE meta_inodes SET parent = ? WHERE id = ?", (new_parent, dir_id))
        cur.execute("UPDATE meta_inodes SET nlink = nlink - 1 WHERE id = ?", (old_parent,))
        cur.execute("UPDATE meta_inodes SET nlink = nlink + 1 WHERE id = ?", (new_parent,))

    def unlink(self, user: pb.User, path: str, directory: bool) -> Removed:
        """Remove a non-directory (or, if ``directory``, an empty directory) entry."""

        def fn(cur: Cursor) -> Removed:
            parent, row, name = self._resolve(cur, user, path, follow=False)
            if not name:
                raise E.InvalidArgument(path, "cannot remove the root")
            if row is None:
                raise E.NotFound(path, "no such file or directory")
            check(parent, user, os.W_OK | os.X_OK, path)
            if parent.mode & _stat.S_ISVTX and user.uid not in (0, row.uid, parent.uid):
                raise E.NotPermitted(path, "sticky directory")
            freed = False
            if directory:
                if row.type != DIR:
                    raise E.NotADirectory(path, "not a directory")
                if cur.one("SELECT name FROM meta_dentries WHERE parent = ? LIMIT 1", (row.id,)):
                    raise E.DirectoryNotEmpty(path, "directory not empty")
                self._delete_inode(cur, row.id)
                cur.execute("UPDATE meta_inodes SET nlink = nlink - 1 WHERE id = ?", (parent.id,))
            else:
                if row.type == DIR:
                    raise E.IsADirectory(path, "is a directory")
                freed = self._drop_link(cur, row)
            cur.execute("DELETE FROM meta_dentries WHERE parent = ? AND name = ?", (parent.id, name))
            now = time.time_ns()
            cur.execute(
                "UPDATE meta_inodes SET mtime_ns = ?, ctime_ns = ? WHERE id = ?", (now, now, parent.id)
            )
            return Removed(row, freed)

        return self.db.run(fn)

    def symlink(self, user: pb.User, path: str, target: str) -> InodeRow:
        """Create symlink ``path`` pointing at ``target`` (stored verbatim)."""

        def fn(cur: Cursor) -> InodeRow:
            if not target or "\0" in target or len(target.encode()) > PATH_MAX:
                raise E.InvalidArgument(path, "symlink target must be 1..4096 bytes without NUL")
            parent, name = self._parent_for_create(cur, user, path)
            return self._new_inode(cur, user, parent, name, SYMLINK, 0o777, target)

        return self.db.run(fn)

    def link(self, user: pb.User, src: str, dst: str) -> InodeRow:
        """Add hard link ``dst`` to the non-directory ``src``."""

        def fn(cur: Cursor) -> InodeRow:
            srow = self._existing(cur, user, src, follow=False)
            if srow.type == DIR:
                raise E.NotPermitted(src, "hard links to directories are not allowed")
            parent, name = self._parent_for_create(cur, user, dst)
            now = time.time_ns()
            cur.execute(
                "INSERT INTO meta_dentries VALUES (?, ?, ?, ?)", (parent.id, name, srow.id, srow.type)
            )
            cur.execute("UPDATE meta_inodes SET nlink = nlink + 1, ctime_ns = ? WHERE id = ?", (now, srow.id))
            cur.execute(
                "UPDATE meta_inodes SET mtime_ns = ?, ctime_ns = ? WHERE id = ?", (now, now, parent.id)
            )
            return self._row(cur, srow.id)  # type: ignore[return-value]

        return self.db.run(fn)

    def truncate(self, user: pb.User, path: str, inode_id: int, length: int) -> tuple[InodeRow, int]:
        """Set a file's size (by ``inode_id`` if non-zero, else by ``path``); returns (row, old size)."""
        max_size = self.max_file_size()

        def fn(cur: Cursor) -> tuple[InodeRow, int]:
            name = path or f"inode {inode_id}"
            if inode_id:
                row = self._row(cur, inode_id)
            else:
                _, row, _ = self._resolve(cur, user, path, follow=True)
            if row is None:
                raise E.NotFound(name, "no such file or directory")
            if row.type == DIR:
                raise E.IsADirectory(name, "not a regular file")
            if row.type != FILE:
                raise E.InvalidArgument(name, "not a regular file")
            if length > max_size:
                raise E.FileTooLarge(name, f"length {length} > max file size {max_size}")
            if not inode_id:
                check(row, user, os.W_OK, name)
            now = time.time_ns()
            cur.execute(
                "UPDATE meta_inodes SET size = ?, mtime_ns = ?, ctime_ns = ? WHERE id = ?",
                (length, now, now, row.id),
            )
            return self._row(cur, row.id), row.size  # type: ignore[return-value]

        return self.db.run(fn)

    def setattr(
        self,
        user: pb.User,
        path: str,
        mode: int | None = None,
        owner: tuple[int, int] | None = None,
        atime: int | str | None = None,
        mtime: int | str | None = None,
        follow: bool = True,
    ) -> InodeRow:
        """Set what is not None, as chmod/chown/utimensat do: ``mode`` (owner or root), ``owner`` (uid,
        gid; root only), ``atime``/``mtime`` (unix ns, or NOW: owner, root or, for NOW only, a writer)."""

        def fn(cur: Cursor) -> InodeRow:
            row = self._existing(cur, user, path, follow=follow)
            is_owner = user.uid in (0, row.uid)
            now = time.time_ns()
            if mode is not None:
                if not is_owner:
                    raise E.NotPermitted(path, "only the owner may chmod")
                cur.execute(
                    "UPDATE meta_inodes SET mode = ?, ctime_ns = ? WHERE id = ?", (mode & 0o7777, now, row.id)
                )
            if owner is not None:
                if user.uid != 0:
                    raise E.NotPermitted(path, "only root may chown")
                cur.execute(
                    "UPDATE meta_inodes SET uid = ?, gid = ?, ctime_ns = ? WHERE id = ?",
                    (*owner, now, row.id),
                )
            if atime is not None or mtime is not None:
                if any(t not in (None, NOW) for t in (atime, mtime)):
                    if not is_owner:
                        raise E.NotPermitted(path, "only the owner may set explicit times")
                elif not is_owner and not allowed(row, user, os.W_OK):
                    raise E.PermissionDenied(path, "permission denied")
                a = row.atime_ns if atime is None else now if atime == NOW else int(atime)
                m = row.mtime_ns if mtime is None else now if mtime == NOW else int(mtime)
                cur.execute(
                    "UPDATE meta_inodes SET atime_ns = ?, mtime_ns = ?, ctime_ns = ? WHERE id = ?",
                    (a, m, now, row.id),
                )
            return self._row(cur, row.id)  # type: ignore[return-value]

        return self.db.run(fn)

    def statfs(self) -> tuple[int, int]:
        """(inodes in use, sum of file sizes in bytes)."""

        def fn(cur: Cursor) -> tuple[int, int]:
            n, used = cur.one(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM meta_inodes WHERE type = ?", (FILE,)
            )  # type: ignore[misc]
            total = cur.one("SELECT COUNT(*) FROM meta_inodes")
            return (int(total[0]) if total else int(n)), int(used)

        return self.db.run(fn, write=False)

    # ---- special files -----------------------------------------------------------------------
    def mknod(self, user: pb.User, path: str, typ: int, mode: int | None, rdev: int) -> InodeRow:
        """Create a FIFO, socket or (root only) device node at ``path``; metadata only."""
        if typ not in SPECIAL:
            raise E.InvalidArgument("type", f"{typ}: mknod makes 4 FIFO, 5 socket, 6 char or 7 block device")
        if typ in (CHR, BLK) and user.uid != 0:
            raise E.NotPermitted(path, "only root may create device nodes")

        def fn(cur: Cursor) -> InodeRow:
            parent, name = self._parent_for_create(cur, user, path)
            perm = 0o644 if mode is None else mode & 0o7777
            return self._new_inode(cur, user, parent, name, typ, perm, rdev=rdev if typ in (CHR, BLK) else 0)

        return self.db.run(fn)
