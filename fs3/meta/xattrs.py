"""Extended attributes of the meta store (a mixin of ``MetaStore``), checked as Linux checks them."""

from __future__ import annotations

import os
import stat as _stat
import time

from ffcommon.db import Cursor
from fs3 import errors as E
from fs3.meta.rows import (
    DIR,
    FILE,
    XATTR_CREATE,
    XATTR_LIST_MAX,
    XATTR_NAME_MAX,
    XATTR_NAMESPACES,
    XATTR_REPLACE,
    XATTR_SIZE_MAX,
    InodeRow,
    check,
)
from fs3.protos import meta_pb2 as pb


class XattrOps:
    """setxattr/getxattr/listxattr/removexattr; needs ``db`` and ``_existing`` of ``MetaStore``."""

    @staticmethod
    def _xattr_name(name: bytes) -> bytes:
        if not name or len(name) > XATTR_NAME_MAX:
            raise E.OutOfRange("xattr name", f"{len(name)} bytes: must be 1..{XATTR_NAME_MAX}")
        if not name.startswith(XATTR_NAMESPACES):
            raise E.NotSupported(
                name.decode(errors="replace"), "xattr namespace not supported (user., trusted., security.)"
            )
        return name

    def _xattr_access(self, row: InodeRow, user: pb.User, name: bytes, write: bool, path: str) -> None:
        """Linux's xattr_permission(): raise what it returns for ``user`` on ``name`` of ``row``."""
        if name.startswith(b"trusted.") or (write and name.startswith(b"security.")):
            if user.uid != 0:
                if write:
                    raise E.NotPermitted(path, "trusted.* and security.* writes need root")
                raise E.NoData(path, "no such attribute")
            return
        if name.startswith(b"security."):
            return
        if row.type not in (FILE, DIR):  # user.* lives on regular files and directories only
            if write:
                raise E.NotPermitted(path, "user.* attributes only on regular files and directories")
            raise E.NoData(path, "no such attribute")
        if write and row.type == DIR and row.mode & _stat.S_ISVTX and user.uid not in (0, row.uid):
            raise E.NotPermitted(path, "sticky directory")
        check(row, user, os.W_OK if write else os.R_OK, path)

    def set_xattr(
        self, user: pb.User, path: str, follow: bool, name: bytes, value: bytes, flags: int
    ) -> None:
        """setxattr(2): XATTR_CREATE/XATTR_REPLACE as Linux; E2BIG past 64 KiB."""
        name = self._xattr_name(name)
        if len(value) > XATTR_SIZE_MAX:
            raise E.TooBig(path, f"xattr value of {len(value)} bytes > {XATTR_SIZE_MAX}")
        if flags & ~(XATTR_CREATE | XATTR_REPLACE):
            raise E.InvalidArgument("flags", f"{flags:#x}: only XATTR_CREATE (1) and XATTR_REPLACE (2)")

        def fn(cur: Cursor) -> None:
            row = self._existing(cur, user, path, follow=follow)
            self._xattr_access(row, user, name, True, path)
            have = cur.one("SELECT 1 FROM meta_xattrs WHERE inode = ? AND name = ?", (row.id, name))
            if have and flags & XATTR_CREATE:
                raise E.AlreadyExists(path, "attribute exists")
            if not have and flags & XATTR_REPLACE:
                raise E.NoData(path, "no such attribute")
            if not have:
                names = [r[0] for r in cur.execute("SELECT name FROM meta_xattrs WHERE inode = ?", (row.id,))]
                if sum(len(n) + 1 for n in names) + len(name) + 1 > XATTR_LIST_MAX:
                    raise E.TooBig(path, f"the attribute names would exceed {XATTR_LIST_MAX} bytes")
                cur.execute("INSERT INTO meta_xattrs VALUES (?, ?, ?)", (row.id, name, value))
            else:
                cur.execute(
                    "UPDATE meta_xattrs SET value = ? WHERE inode = ? AND name = ?", (value, row.id, name)
                )
            cur.execute("UPDATE meta_inodes SET ctime_ns = ? WHERE id = ?", (time.time_ns(), row.id))

        self.db.run(fn)

    def get_xattr(self, user: pb.User, path: str, follow: bool, name: bytes) -> bytes:
        """getxattr(2); ENODATA if unset (or hidden from ``user``)."""
        name = self._xattr_name(name)

        def fn(cur: Cursor) -> bytes:
            row = self._existing(cur, user, path, follow=follow)
            self._xattr_access(row, user, name, False, path)
            got = cur.one("SELECT value FROM meta_xattrs WHERE inode = ? AND name = ?", (row.id, name))
            if got is None:
                raise E.NoData(path, "no such attribute")
            return bytes(got[0])

        return self.db.run(fn, write=False)

    def list_xattrs(self, user: pb.User, path: str, follow: bool) -> list[bytes]:
        """listxattr(2): the names ``user`` may see (trusted.* only for root), sorted."""

        def fn(cur: Cursor) -> list[bytes]:
            row = self._existing(cur, user, path, follow=follow)
            names = [
                bytes(r[0]) for r in cur.execute("SELECT name FROM meta_xattrs WHERE inode = ?", (row.id,))
            ]
            return sorted(n for n in names if user.uid == 0 or not n.startswith(b"trusted."))

        return self.db.run(fn, write=False)

    def remove_xattr(self, user: pb.User, path: str, follow: bool, name: bytes) -> None:
        """removexattr(2); ENODATA if unset."""
        name = self._xattr_name(name)

        def fn(cur: Cursor) -> None:
            row = self._existing(cur, user, path, follow=follow)
            self._xattr_access(row, user, name, True, path)
            if cur.one("SELECT 1 FROM meta_xattrs WHERE inode = ? AND name = ?", (row.id, name)) is None:
                raise E.NoData(path, "no such attribute")
            cur.execute("DELETE FROM meta_xattrs WHERE inode = ? AND name = ?", (row.id, name))
            cur.execute("UPDATE meta_inodes SET ctime_ns = ? WHERE id = ?", (time.time_ns(), row.id))

        self.db.run(fn)
