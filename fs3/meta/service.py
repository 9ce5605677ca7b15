"""The meta servicer: inodes and directory entries as in 3FS, in one SQL schema for SQLite and PostgreSQL.

Every RPC is one serializable transaction (retried on conflict). Paths are resolved here, with owner/mode
checks on every traversed directory; uid 0 bypasses permission checks.
"""

from __future__ import annotations

import logging
import os
import random
import stat as _stat
import threading
import time
from collections.abc import Callable

import grpc

from fs3 import _rpc
from fs3 import errors as E
from fs3._db import Cursor, Database
from fs3.protos import common_pb2 as cpb
from fs3.protos import meta_pb2 as pb
from fs3.protos import meta_pb2_grpc, mgmtd_pb2_grpc
from fs3.protos import mgmtd_pb2 as mpb

FILE, DIR, SYMLINK = 1, 2, 3
ROOT_ID = 1
NAME_MAX = 255
PATH_MAX = 4096
SYMLOOP_MAX = 40

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta_inodes (
  id BIGINT PRIMARY KEY, type INTEGER NOT NULL, mode INTEGER NOT NULL, uid BIGINT NOT NULL, gid BIGINT NOT NULL,
  nlink INTEGER NOT NULL, size BIGINT NOT NULL, atime DOUBLE PRECISION NOT NULL, mtime DOUBLE PRECISION NOT NULL,
  ctime DOUBLE PRECISION NOT NULL, chunk_size BIGINT NOT NULL, stripe INTEGER NOT NULL, chains TEXT NOT NULL,
  seed BIGINT NOT NULL, symlink TEXT NOT NULL, parent BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS meta_dentries (
  parent BIGINT NOT NULL, name TEXT NOT NULL, inode BIGINT NOT NULL, type INTEGER NOT NULL,
  PRIMARY KEY (parent, name));
CREATE TABLE IF NOT EXISTS meta_sessions (
  id BIGINT PRIMARY KEY, inode BIGINT NOT NULL, client TEXT NOT NULL, created DOUBLE PRECISION NOT NULL);
CREATE INDEX IF NOT EXISTS meta_sessions_inode ON meta_sessions (inode);
CREATE TABLE IF NOT EXISTS meta_counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL)
"""

COLS = "id, type, mode, uid, gid, nlink, size, atime, mtime, ctime, chunk_size, stripe, chains, seed, symlink, parent"


def split_path(path: str) -> list[str]:
    """Validate an absolute path and return its components; raise InvalidArgument/NameTooLong."""
    if not isinstance(path, str) or not path.startswith("/"):
        raise E.InvalidArgument(str(path), "path must be absolute")
    if "\0" in path:
        raise E.InvalidArgument(path.replace("\0", "\\0"), "path contains NUL")
    if len(path.encode()) > PATH_MAX:
        raise E.NameTooLong(path[:64] + "...", f"path longer than {PATH_MAX} bytes")
    parts = [p for p in path.split("/") if p]
    for p in parts:
        if p in (".", ".."):
            raise E.InvalidArgument(path, f"path component {p!r} is not allowed")
        if len(p.encode()) > NAME_MAX:
            raise E.NameTooLong(path, f"component longer than {NAME_MAX} bytes")
    return parts


class MetaService(meta_pb2_grpc.MetaServicer):
    """Namespace operations; stateless apart from a cached copy of mgmtd's routing info."""

    def __init__(
        self, db_url: str, mgmtd: str, node_id: int = 100, address: str = "", heartbeat_s: float = 1.0
    ) -> None:
        self.db = Database(db_url)
        self.db.executescript(SCHEMA)
        self.db.run(self._init_root)
        self._routing: cpb.RoutingInfo | None = None
        self._mgmtd = mgmtd_pb2_grpc.MgmtdStub(_rpc.channel(mgmtd))
        self._node_id, self._address = node_id, address
        self._stop = threading.Event()
        self._routing_ready = threading.Event()
        self._hb = threading.Thread(target=self._heartbeat_loop, args=(heartbeat_s,), daemon=True)
        self._hb.start()

    def stop(self) -> None:
        """Stop heartbeating."""
        self._stop.set()

    def _heartbeat_loop(self, interval_s: float) -> None:
        while True:
            try:
                rsp = self._mgmtd.Heartbeat(
                    mpb.HeartbeatReq(node_id=self._node_id, address=self._address, role="meta"), timeout=5
                )
                self._routing = rsp.routing
                if rsp.routing.chains:
                    self._routing_ready.set()
            except grpc.RpcError as exc:
                logging.warning("heartbeat to mgmtd failed: %s", exc.code())
            if self._stop.wait(interval_s):
                return

    def _routing_info(self) -> cpb.RoutingInfo:
        if not self._routing_ready.is_set():
            try:
                self._routing = self._mgmtd.GetRouting(mpb.GetRoutingReq(), timeout=5).routing
            except grpc.RpcError as exc:
                raise E.ClusterTimeout("mgmtd", f"no routing info: {exc.code()}") from exc
            if not self._routing.chains:
                raise E.NotServing("chain table", "no chain table uploaded to mgmtd yet")
            self._routing_ready.set()
        assert self._routing is not None
        return self._routing

    # ---- transactions and rows ---------------------------------------------------------------
    @staticmethod
    def _init_root(cur: Cursor) -> None:
        if cur.one("SELECT id FROM meta_inodes WHERE id = ?", (ROOT_ID,)) is None:
            now = time.time()
            cur.execute(
                f"INSERT INTO meta_inodes ({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (ROOT_ID, DIR, 0o755, 0, 0, 2, 0, now, now, now, 0, 0, "", 0, "", ROOT_ID),
            )
        if cur.one("SELECT value FROM meta_counters WHERE name = 'inode'") is None:
            cur.execute("INSERT INTO meta_counters VALUES ('inode', ?)", (ROOT_ID,))
            cur.execute("INSERT INTO meta_counters VALUES ('session', 0)")

    def _call(
        self, context: grpc.ServicerContext, fn: Callable[[Cursor], object], write: bool = True
    ) -> object:
        try:
            return self.db.run(fn, write=write)
        except E.FS3Error as exc:
            E.abort(context, exc)
        except Exception as exc:  # noqa: BLE001 - a database failure must reach the caller as a status
            logging.exception("meta transaction failed")
            context.abort(grpc.StatusCode.INTERNAL, f"EIO: meta: {type(exc).__name__}: {exc}")

    @staticmethod
    def _next(cur: Cursor, name: str) -> int:
        row = cur.one("UPDATE meta_counters SET value = value + 1 WHERE name = ? RETURNING value", (name,))
        assert row is not None
        return int(row[0])

    @staticmethod
    def _row(cur: Cursor, inode_id: int) -> tuple | None:
        return cur.one(f"SELECT {COLS} FROM meta_inodes WHERE id = ?", (inode_id,))

    @staticmethod
    def _msg(row: tuple) -> cpb.Inode:
        chains = [int(c) for c in row[12].split(",") if c]
        return cpb.Inode(
            inode_id=row[0],
            type=row[1],
            mode=row[2],
            uid=row[3],
            gid=row[4],
            nlink=row[5],
            size=row[6],
            atime=row[7],
            mtime=row[8],
            ctime=row[9],
            layout=cpb.Layout(chunk_size=row[10], stripe=row[11], chains=chains, seed=row[13]),
            symlink_target=row[14],
            parent_id=row[15] if row[1] == DIR else 0,
        )

    @staticmethod
    def _allowed(row: tuple, user: pb.User, want: int) -> bool:
        if user.uid == 0:
            return True
        mode = row[2]
        if user.uid == row[3]:
            bits = mode >> 6
        elif user.gid == row[4] or row[4] in user.groups:
            bits = mode >> 3
        else:
            bits = mode
        return (bits & want) == want

    def _check(self, row: tuple, user: pb.User, want: int, path: str) -> None:
        if not self._allowed(row, user, want):
            raise E.PermissionDenied(path, "permission denied")

    # ---- path resolution ---------------------------------------------------------------------
    def _resolve(
        self, cur: Cursor, user: pb.User, path: str, follow: bool = True
    ) -> tuple[tuple, tuple | None, str]:
        """Resolve ``path`` to (parent dir row, target row or None, last name); checks search permission."""
        parts = split_path(path)
        if not parts:
            root = self._row(cur, ROOT_ID)
            assert root is not None
            return root, root, ""
        stack: list[tuple] = [self._row(cur, ROOT_ID)]  # type: ignore[list-item]
        todo = list(parts)
        hops = 0
        while True:
            name = todo.pop(0)
            d = stack[-1]
            if d[1] != DIR:
                raise E.NotADirectory(path, "a path component is not a directory")
            self._check(d, user, 1, path)
            if name == "..":  # only from symlink targets
                if len(stack) > 1:
                    stack.pop()
                continue
            ent = cur.one("SELECT inode FROM meta_dentries WHERE parent = ? AND name = ?", (d[0], name))
            row = self._row(cur, ent[0]) if ent else None
            last = not todo
            if row is not None and row[1] == SYMLINK and (not last or follow):
                hops += 1
                if hops > SYMLOOP_MAX:
                    raise E.TooManyLinks(path, "too many levels of symbolic links")
                target = row[14]
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

    # ---- layout ------------------------------------------------------------------------------
    def _file_layout(self, parent: tuple, inode_id: int) -> tuple[int, int, str, int]:
        routing = self._routing_info()
        chain_ids = [c.chain_id for c in routing.chains]
        chunk_size = parent[10] or routing.chunk_size
        stripe = min(parent[11] or routing.stripe or len(chain_ids), len(chain_ids))
        start = (inode_id * stripe) % len(chain_ids)  # round-robin over the table
        picked = [chain_ids[(start + i) % len(chain_ids)] for i in range(stripe)]
        seed = random.getrandbits(62)
        random.Random(seed).shuffle(picked)  # 3FS: shuffled by a per-file seed
        return chunk_size, stripe, ",".join(map(str, picked)), seed

    def _new_inode(
        self, cur: Cursor, user: pb.User, parent: tuple, name: str, typ: int, mode: int, symlink: str = ""
    ) -> tuple:
        iid = self._next(cur, "inode")
        now = time.time()
        if typ == FILE:
            chunk_size, stripe, chains, seed = self._file_layout(parent, iid)
        elif typ == DIR:
            chunk_size, stripe, chains, seed = parent[10], parent[11], "", 0
        else:
            chunk_size, stripe, chains, seed = 0, 0, "", 0
        gid = parent[4] if parent[2] & _stat.S_ISGID else user.gid
        row = (
            iid, typ, mode & 0o7777, user.uid, gid, 2 if typ == DIR else 1, len(symlink.encode()), now, now, now,
            chunk_size, stripe, chains, seed, symlink, parent[0] if typ == DIR else 0,
        )  # fmt: skip
        cur.execute(f"INSERT INTO meta_inodes ({COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", row)
        cur.execute("INSERT INTO meta_dentries VALUES (?, ?, ?, ?)", (parent[0], name, iid, typ))
        cur.execute(
            "UPDATE meta_inodes SET mtime = ?, ctime = ?, nlink = nlink + ? WHERE id = ?",
            (now, now, 1 if typ == DIR else 0, parent[0]),
        )
        return row

    def _parent_for_create(self, cur: Cursor, user: pb.User, path: str, follow: bool = False) -> tuple:
        parent, row, name = self._resolve(cur, user, path, follow=follow)
        if not name:
            raise E.AlreadyExists(path, "file exists")
        if row is not None:
            raise E.AlreadyExists(path, "file exists")
        self._check(parent, user, 3, path)
        return parent, name

    def _max_file_size(self) -> int:
        try:
            return self._routing_info().max_file_size or (1 << 40)
        except E.FS3Error:
            return 1 << 40

    # ---- RPCs --------------------------------------------------------------------------------
    def Stat(self, request: pb.PathReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        def fn(cur: Cursor) -> pb.InodeRsp:
            _, row, _ = self._resolve(cur, request.user, request.path, follow=request.follow)
            if row is None:
                raise E.NotFound(request.path, "no such file or directory")
            return pb.InodeRsp(inode=self._msg(row))

        return self._call(context, fn, write=False)

    def StatInode(self, request: pb.StatInodeReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        def fn(cur: Cursor) -> pb.InodeRsp:
            row = self._row(cur, request.inode_id)
            if row is None:
                raise E.NotFound(f"inode {request.inode_id}", "no such inode")
            return pb.InodeRsp(inode=self._msg(row))

        return self._call(context, fn, write=False)

    def Mkdir(self, request: pb.MkdirReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        lay = request.layout
        if lay.chunk_size and (
            lay.chunk_size & (lay.chunk_size - 1) or not (64 << 10) <= lay.chunk_size <= (64 << 20)
        ):
            E.abort(
                context,
                E.InvalidArgument(
                    "layout.chunk_size", f"{lay.chunk_size} is not a power of two in 64 KiB..64 MiB"
                ),
            )

        def fn(cur: Cursor) -> pb.InodeRsp:
            parts = split_path(request.path)
            if not parts:
                if request.parents:
                    return pb.InodeRsp(inode=self._msg(self._row(cur, ROOT_ID)))
                raise E.AlreadyExists("/", "file exists")
            prefixes = (
                ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]
                if request.parents
                else [request.path]
            )
            row = None
            for p in prefixes:
                parent, row, name = self._resolve(cur, request.user, p, follow=True)
                if row is not None:
                    if row[1] != DIR or not request.parents:
                        raise E.AlreadyExists(p, "file exists")
                    continue
                self._check(parent, request.user, 3, p)
                row = self._new_inode(cur, request.user, parent, name, DIR, request.mode or 0o755)
                if lay.chunk_size or lay.stripe:
                    cur.execute(
                        "UPDATE meta_inodes SET chunk_size = ?, stripe = ? WHERE id = ?",
                        (lay.chunk_size or row[10], lay.stripe or row[11], row[0]),
                    )
                    row = self._row(cur, row[0])
            return pb.InodeRsp(inode=self._msg(row))

        return self._call(context, fn)

    def Open(self, request: pb.OpenReq, context: grpc.ServicerContext) -> pb.OpenRsp:
        flags = request.flags
        writing = bool(flags & (os.O_WRONLY | os.O_RDWR))

        def fn(cur: Cursor) -> pb.OpenRsp:
            parent, row, name = self._resolve(cur, request.user, request.path, follow=True)
            truncated, old_size = False, 0
            if row is None:
                if not flags & os.O_CREAT:
                    raise E.NotFound(request.path, "no such file or directory")
                if not name:
                    raise E.IsADirectory(request.path, "is a directory")
                self._check(parent, request.user, 3, request.path)
                row = self._new_inode(cur, request.user, parent, name, FILE, request.mode or 0o644)
            else:
                if flags & os.O_CREAT and flags & os.O_EXCL:
                    raise E.AlreadyExists(request.path, "file exists")
                if row[1] == DIR:
                    raise E.IsADirectory(request.path, "is a directory")
                want = (2 if writing else 0) | (4 if not (flags & os.O_WRONLY) else 0)
                self._check(row, request.user, want, request.path)
                if flags & os.O_TRUNC and writing and row[6] > 0:
                    truncated, old_size = True, row[6]
                    now = time.time()
                    cur.execute(
                        "UPDATE meta_inodes SET size = 0, mtime = ?, ctime = ? WHERE id = ?",
                        (now, now, row[0]),
                    )
                    row = self._row(cur, row[0])
            session = 0
            if writing:
                session = self._next(cur, "session")
                cur.execute(
                    "INSERT INTO meta_sessions VALUES (?, ?, ?, ?)",
                    (session, row[0], request.client_id, time.time()),
                )
            return pb.OpenRsp(
                inode=self._msg(row), session_id=session, truncated=truncated, old_size=old_size
            )

        return self._call(context, fn)

    def Close(self, request: pb.CloseReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        max_size = self._max_file_size()

        def fn(cur: Cursor) -> pb.InodeRsp:
            row = self._row(cur, request.inode_id)
            if row is None or row[1] != FILE:
                raise E.NotFound(f"inode {request.inode_id}", "no such file inode")
            if request.length > max_size:
                raise E.FileTooLarge(
                    f"inode {request.inode_id}", f"length {request.length} > max file size {max_size}"
                )
            now = time.time()
            if request.length > row[6] or request.wrote:
                cur.execute(
                    "UPDATE meta_inodes SET size = ?, mtime = ?, ctime = ? WHERE id = ?",
                    (
                        max(row[6], request.length),
                        now if request.wrote else row[8],
                        now if request.wrote else row[9],
                        row[0],
                    ),
                )
            if request.session_id:
                cur.execute(
                    "DELETE FROM meta_sessions WHERE id = ? AND inode = ?", (request.session_id, row[0])
                )
                left = cur.one("SELECT COUNT(*) FROM meta_sessions WHERE inode = ?", (row[0],))
                if row[5] == 0 and left and int(left[0]) == 0:  # unlinked while open: free it now
                    cur.execute("DELETE FROM meta_inodes WHERE id = ?", (row[0],))
                    return pb.InodeRsp(inode=self._msg(row))
            return pb.InodeRsp(inode=self._msg(self._row(cur, row[0])))

        return self._call(context, fn)

    def List(self, request: pb.ListReq, context: grpc.ServicerContext) -> pb.ListRsp:
        def fn(cur: Cursor) -> pb.ListRsp:
            _, row, _ = self._resolve(cur, request.user, request.path, follow=True)
            if row is None:
                raise E.NotFound(request.path, "no such file or directory")
            if row[1] != DIR:
                raise E.NotADirectory(request.path, "not a directory")
            self._check(row, request.user, 4, request.path)
            if request.with_inodes:
                cols = ", ".join(f"i.{c.strip()}" for c in COLS.split(","))
                rows = cur.execute(
                    f"SELECT d.name, {cols} FROM meta_dentries d JOIN meta_inodes i ON i.id = d.inode "
                    "WHERE d.parent = ? ORDER BY d.name",
                    (row[0],),
                )
                return pb.ListRsp(
                    entries=[
                        pb.DirEntry(name=r[0], inode_id=r[1], type=r[2], inode=self._msg(r[1:])) for r in rows
                    ]
                )
            rows = cur.execute(
                "SELECT name, inode, type FROM meta_dentries WHERE parent = ? ORDER BY name", (row[0],)
            )
            return pb.ListRsp(entries=[pb.DirEntry(name=n, inode_id=i, type=t) for n, i, t in rows])

        return self._call(context, fn, write=False)

    def _drop_link(self, cur: Cursor, row: tuple) -> bool:
        """Decrement a non-directory inode's link count; delete it if unreferenced. True if freed."""
        now = time.time()
        if row[5] > 1:
            cur.execute("UPDATE meta_inodes SET nlink = nlink - 1, ctime = ? WHERE id = ?", (now, row[0]))
            return False
        sessions = cur.one("SELECT COUNT(*) FROM meta_sessions WHERE inode = ?", (row[0],))
        if sessions and int(sessions[0]) > 0:
            cur.execute("UPDATE meta_inodes SET nlink = 0, ctime = ? WHERE id = ?", (now, row[0]))
            return False
        cur.execute("DELETE FROM meta_inodes WHERE id = ?", (row[0],))
        return row[1] == FILE

    def Rename(self, request: pb.RenameReq, context: grpc.ServicerContext) -> pb.UnlinkRsp:
        def fn(cur: Cursor) -> pb.UnlinkRsp:
            user = request.user
            sparent, srow, sname = self._resolve(cur, user, request.src, follow=False)
            if not sname:
                raise E.InvalidArgument(request.src, "cannot rename the root")
            if srow is None:
                raise E.NotFound(request.src, "no such file or directory")
            dparent, drow, dname = self._resolve(cur, user, request.dst, follow=False)
            if not dname:
                raise E.InvalidArgument(request.dst, "cannot replace the root")
            self._check(sparent, user, 3, request.src)
            self._check(dparent, user, 3, request.dst)
            if srow[1] == DIR and dparent[0] != sparent[0]:
                anc = dparent
                while True:  # loop check: dst parent must not be inside src
                    if anc[0] == srow[0]:
                        raise E.InvalidArgument(request.dst, "cannot move a directory into itself")
                    if anc[0] == ROOT_ID:
                        break
                    anc = self._row(cur, anc[15])
            rsp = pb.UnlinkRsp()
            now = time.time()
            if drow is not None:
                if drow[0] == srow[0]:
                    return rsp
                if srow[1] == DIR and drow[1] != DIR:
                    raise E.NotADirectory(request.dst, "not a directory")
                if srow[1] != DIR and drow[1] == DIR:
                    raise E.IsADirectory(request.dst, "is a directory")
                if drow[1] == DIR:
                    if cur.one("SELECT name FROM meta_dentries WHERE parent = ? LIMIT 1", (drow[0],)):
                        raise E.DirectoryNotEmpty(request.dst, "directory not empty")
                    cur.execute("DELETE FROM meta_inodes WHERE id = ?", (drow[0],))
                    cur.execute("UPDATE meta_inodes SET nlink = nlink - 1 WHERE id = ?", (dparent[0],))
                else:
                    rsp.freed = self._drop_link(cur, drow)
                rsp.inode.CopyFrom(self._msg(drow))
                cur.execute("DELETE FROM meta_dentries WHERE parent = ? AND name = ?", (dparent[0], dname))
            cur.execute("DELETE FROM meta_dentries WHERE parent = ? AND name = ?", (sparent[0], sname))
            cur.execute(
                "INSERT INTO meta_dentries VALUES (?, ?, ?, ?)", (dparent[0], dname, srow[0], srow[1])
            )
            if srow[1] == DIR and dparent[0] != sparent[0]:
                cur.execute("UPDATE meta_inodes SET parent = ? WHERE id = ?", (dparent[0], srow[0]))
                cur.execute("UPDATE meta_inodes SET nlink = nlink - 1 WHERE id = ?", (sparent[0],))
                cur.execute("UPDATE meta_inodes SET nlink = nlink + 1 WHERE id = ?", (dparent[0],))
            cur.execute("UPDATE meta_inodes SET ctime = ? WHERE id = ?", (now, srow[0]))
            cur.execute(
                "UPDATE meta_inodes SET mtime = ?, ctime = ? WHERE id IN (?, ?)",
                (now, now, sparent[0], dparent[0]),
            )
            return rsp

        return self._call(context, fn)

    def Unlink(self, request: pb.UnlinkReq, context: grpc.ServicerContext) -> pb.UnlinkRsp:
        def fn(cur: Cursor) -> pb.UnlinkRsp:
            parent, row, name = self._resolve(cur, request.user, request.path, follow=False)
            if not name:
                raise E.InvalidArgument(request.path, "cannot remove the root")
            if row is None:
                raise E.NotFound(request.path, "no such file or directory")
            self._check(parent, request.user, 3, request.path)
            if parent[2] & _stat.S_ISVTX and request.user.uid not in (0, row[3], parent[3]):
                raise E.NotPermitted(request.path, "sticky directory")
            rsp = pb.UnlinkRsp(inode=self._msg(row))
            if request.directory:
                if row[1] != DIR:
                    raise E.NotADirectory(request.path, "not a directory")
                if cur.one("SELECT name FROM meta_dentries WHERE parent = ? LIMIT 1", (row[0],)):
                    raise E.DirectoryNotEmpty(request.path, "directory not empty")
                cur.execute("DELETE FROM meta_inodes WHERE id = ?", (row[0],))
                cur.execute("UPDATE meta_inodes SET nlink = nlink - 1 WHERE id = ?", (parent[0],))
            else:
                if row[1] == DIR:
                    raise E.IsADirectory(request.path, "is a directory")
                rsp.freed = self._drop_link(cur, row)
            cur.execute("DELETE FROM meta_dentries WHERE parent = ? AND name = ?", (parent[0], name))
            now = time.time()
            cur.execute("UPDATE meta_inodes SET mtime = ?, ctime = ? WHERE id = ?", (now, now, parent[0]))
            return rsp

        return self._call(context, fn)

    def Symlink(self, request: pb.SymlinkReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        def fn(cur: Cursor) -> pb.InodeRsp:
            if not request.target or "\0" in request.target or len(request.target.encode()) > PATH_MAX:
                raise E.InvalidArgument(request.path, "symlink target must be 1..4096 bytes without NUL")
            parent, name = self._parent_for_create(cur, request.user, request.path)
            return pb.InodeRsp(
                inode=self._msg(
                    self._new_inode(cur, request.user, parent, name, SYMLINK, 0o777, request.target)
                )
            )

        return self._call(context, fn)

    def Link(self, request: pb.LinkReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        def fn(cur: Cursor) -> pb.InodeRsp:
            _, srow, _ = self._resolve(cur, request.user, request.src, follow=False)
            if srow is None:
                raise E.NotFound(request.src, "no such file or directory")
            if srow[1] == DIR:
                raise E.NotPermitted(request.src, "hard links to directories are not allowed")
            parent, name = self._parent_for_create(cur, request.user, request.dst)
            now = time.time()
            cur.execute("INSERT INTO meta_dentries VALUES (?, ?, ?, ?)", (parent[0], name, srow[0], srow[1]))
            cur.execute("UPDATE meta_inodes SET nlink = nlink + 1, ctime = ? WHERE id = ?", (now, srow[0]))
            cur.execute("UPDATE meta_inodes SET mtime = ?, ctime = ? WHERE id = ?", (now, now, parent[0]))
            return pb.InodeRsp(inode=self._msg(self._row(cur, srow[0])))

        return self._call(context, fn)

    def Truncate(self, request: pb.TruncateReq, context: grpc.ServicerContext) -> pb.TruncateRsp:
        max_size = self._max_file_size()

        def fn(cur: Cursor) -> pb.TruncateRsp:
            name = request.path or f"inode {request.inode_id}"
            if request.inode_id:
                row = self._row(cur, request.inode_id)
            else:
                _, row, _ = self._resolve(cur, request.user, request.path, follow=True)
            if row is None:
                raise E.NotFound(name, "no such file or directory")
            if row[1] != FILE:
                raise E.IsADirectory(name, "not a regular file")
            if request.length > max_size:
                raise E.FileTooLarge(name, f"length {request.length} > max file size {max_size}")
            if not request.inode_id:
                self._check(row, request.user, 2, name)
            now = time.time()
            cur.execute(
                "UPDATE meta_inodes SET size = ?, mtime = ?, ctime = ? WHERE id = ?",
                (request.length, now, now, row[0]),
            )
            return pb.TruncateRsp(inode=self._msg(self._row(cur, row[0])), old_size=row[6])

        return self._call(context, fn)

    def SetAttr(self, request: pb.SetAttrReq, context: grpc.ServicerContext) -> pb.InodeRsp:
        def fn(cur: Cursor) -> pb.InodeRsp:
            user = request.user
            _, row, _ = self._resolve(cur, user, request.path, follow=True)
            if row is None:
                raise E.NotFound(request.path, "no such file or directory")
            owner = user.uid in (0, row[3])
            now = time.time()
            if request.set_mode:
                if not owner:
                    raise E.NotPermitted(request.path, "only the owner may chmod")
                cur.execute(
                    "UPDATE meta_inodes SET mode = ?, ctime = ? WHERE id = ?",
                    (request.mode & 0o7777, now, row[0]),
                )
            if request.set_owner:
                if user.uid != 0:
                    raise E.NotPermitted(request.path, "only root may chown")
                cur.execute(
                    "UPDATE meta_inodes SET uid = ?, gid = ?, ctime = ? WHERE id = ?",
                    (request.uid, request.gid, now, row[0]),
                )
            if request.set_times:
                if not owner and not self._allowed(row, user, 2):
                    raise E.PermissionDenied(request.path, "permission denied")
                cur.execute(
                    "UPDATE meta_inodes SET atime = ?, mtime = ?, ctime = ? WHERE id = ?",
                    (request.atime, request.mtime, now, row[0]),
                )
            return pb.InodeRsp(inode=self._msg(self._row(cur, row[0])))

        return self._call(context, fn)

    def StatFs(self, request: pb.StatFsReq, context: grpc.ServicerContext) -> pb.StatFsRsp:
        def fn(cur: Cursor) -> pb.StatFsRsp:
            n, used = cur.one("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM meta_inodes WHERE type = 1")  # type: ignore[misc]
            total = cur.one("SELECT COUNT(*) FROM meta_inodes")
            return pb.StatFsRsp(inodes=int(total[0]) if total else int(n), used_bytes=int(used))

        return self._call(context, fn, write=False)
