"""Differential test: seeded random file-operation sequences run on a local temp dir (ext4 or tmpfs of
this machine) and in the mount, step by step; every return value, errno, compared stat field and byte
must agree. Compared stat fields: type and permission bits, nlink, uid, gid, size (not of directories), and
the times an explicit utime set. Not compared (docs/POSIX.md says why): inode numbers, st_blocks,
st_dev, directory sizes, times set by the clock (two clocks, two file systems)."""

from __future__ import annotations

import ctypes
import errno
import os
import random
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuse


def _seeds() -> list[int]:
    """1..3, or ``$FS3_DIFF_SEEDS`` ("1-200" or "7,9") for a longer hunt."""
    spec = os.environ.get("FS3_DIFF_SEEDS", "1-3")
    if "-" in spec:
        lo, hi = spec.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(x) for x in spec.split(",")]


SEEDS = _seeds()
STEPS = int(os.environ.get("FS3_DIFF_STEPS", "150"))
NAMES = ["f0", "f1", "f2", "d0", "d0/f3", "d0/d1", "d0/d1/f4", "l0"]
_libc = ctypes.CDLL(None, use_errno=True)


class Side:
    """One file system under test: a root directory and the descriptors opened in it so far."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.fds: list[int | None] = []

    def p(self, name: str) -> str:
        return str(self.root / name)

    def close_all(self) -> None:
        for fd in self.fds:
            if fd is not None:
                os.close(fd)
        self.fds.clear()


def _stat(st: os.stat_result) -> tuple:
    size = None if stat.S_ISDIR(st.st_mode) else st.st_size  # a directory's size is each file system's own
    return (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_nlink, st.st_uid, st.st_gid, size)


def _run(fn: Callable[[], object]) -> tuple:
    try:
        return ("ok", fn())
    except OSError as exc:
        return ("err", errno.errorcode.get(exc.errno or 0, str(exc.errno)))


class Ops:
    """Draws operations from a seeded generator; each op is a function of a Side returning its result."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.n_fds = 0  # descriptors opened so far (same index on both sides)

    def _name(self) -> str:
        return self.rng.choice(NAMES)

    def _fd(self) -> int | None:
        return self.rng.randrange(self.n_fds) if self.n_fds else None

    def draw(self) -> tuple[str, Callable[[Side], object]]:
        r = self.rng
        kind = r.choice(
            ["open"] * 4 + ["write"] * 4 + ["read"] * 3 + ["close"] * 2 + ["stat"] * 3
            + ["truncate", "ftruncate", "rename", "rename2", "link", "symlink", "unlink", "mkdir", "rmdir",
               "chmod", "chown", "utime", "listdir", "xattr", "mknod", "readlink", "fsync", "readall"]
        )  # fmt: skip
        name, other = self._name(), self._name()
        if kind == "open":
            acc = r.choice([os.O_RDONLY, os.O_WRONLY, os.O_RDWR])
            flags = acc | r.choice(
                [0, os.O_CREAT, os.O_CREAT | os.O_EXCL, os.O_CREAT | os.O_TRUNC, os.O_APPEND]
            )
            mode = r.choice([0o644, 0o600, 0o755, 0])
            idx = self.n_fds
            self.n_fds += 1

            def op(s: Side) -> object:
                s.fds.append(None)
                # O_NONBLOCK: opening a FIFO must not wait for a peer (regular files ignore it)
                fd = os.open(s.p(name), flags | os.O_CLOEXEC | os.O_NONBLOCK, mode)
                s.fds[idx] = fd
                return "fd"

            return f"open({name}, {flags:#o}, {mode:#o}) -> fd{idx}", op
        if kind in ("write", "read", "close", "ftruncate", "fsync"):
            i = self._fd()
            if i is None:
                return "noop", lambda s: None
            off = r.choice([0, r.randrange(0, 300_000), r.randrange(0, 70_000)])
            size = r.choice([1, 100, 4096, r.randrange(1, 70_000)])
            data = r.randbytes(size)

            def fd_op(s: Side) -> object:
                fd = s.fds[i]
                if fd is None:
                    return "closed"
                if kind == "write":
                    return os.pwrite(fd, data, off) if r_pos else os.write(fd, data)
                if kind == "read":
                    return os.pread(fd, size, off)
                if kind == "ftruncate":
                    os.ftruncate(fd, off)
                    return None
                if kind == "fsync":
                    os.fsync(fd)
                    return None
                s.fds[i] = None
                os.close(fd)
                return None

            r_pos = r.random() < 0.7
            return f"{kind}(fd{i}, off={off}, size={size}, positional={r_pos})", fd_op
        if kind == "stat":
            follow = r.random() < 0.5
            return f"stat({name}, follow={follow})", lambda s: _stat(
                os.stat(s.p(name), follow_symlinks=follow)
            )
        if kind == "truncate":
            length = r.randrange(0, 200_000)
            return f"truncate({name}, {length})", lambda s: os.truncate(s.p(name), length)
        if kind == "rename":
            return f"rename({name}, {other})", lambda s: os.rename(s.p(name), s.p(other))
        if kind == "rename2":
            flags = r.choice([1, 2])

            def rename2(s: Side) -> object:
                if _libc.renameat2(-100, os.fsencode(s.p(name)), -100, os.fsencode(s.p(other)), flags) != 0:
                    code = ctypes.get_errno()
                    raise OSError(code, os.strerror(code))
                return None

            return f"renameat2({name}, {other}, {flags})", rename2
        if kind == "link":
            return f"link({name}, {other})", lambda s: os.link(s.p(name), s.p(other), follow_symlinks=False)
        if kind == "symlink":
            target = r.choice(["f0", "d0", "nowhere", "d0/../f1"])  # never out of the test dir
            return f"symlink({target}, {name})", lambda s: os.symlink(target, s.p(name))
        if kind == "unlink":
            return f"unlink({name})", lambda s: os.unlink(s.p(name))
        if kind == "mkdir":
            mode = r.choice([0o755, 0o700, 0])
            return f"mkdir({name}, {mode:#o})", lambda s: os.mkdir(s.p(name), mode)
        if kind == "rmdir":
            return f"rmdir({name})", lambda s: os.rmdir(s.p(name))
        if kind == "chmod":
            mode = r.choice([0o644, 0o600, 0o755, 0o4755, 0o1777, 0])
            return f"chmod({name}, {mode:#o})", lambda s: os.chmod(s.p(name), mode, follow_symlinks=True)
        if kind == "chown":
            uid, gid = r.choice([(0, 0), (65534, 65534), (1000, 0)])
            return f"lchown({name}, {uid}, {gid})", lambda s: os.chown(
                s.p(name), uid, gid, follow_symlinks=False
            )
        if kind == "utime":
            ns = (r.randrange(1 << 60), r.randrange(1 << 60))

            def utime(s: Side) -> object:
                os.utime(s.p(name), ns=ns, follow_symlinks=False)
                st = os.lstat(s.p(name))
                return st.st_atime_ns, st.st_mtime_ns

            return f"utime({name}, {ns})", utime
        if kind == "listdir":
            d = r.choice([".", "d0", "d0/d1", "f0"])
            return f"listdir({d})", lambda s: sorted(os.listdir(s.p(d)))
        if kind == "xattr":
            attr = r.choice(["user.a", "user.b", "trusted.t"])
            value = r.randbytes(r.randrange(0, 300))
            sub = r.choice(["set", "get", "remove", "list", "create", "replace"])

            def xattr(s: Side) -> object:
                p = s.p(name)
                if sub == "set":
                    return os.setxattr(p, attr, value, follow_symlinks=False)
                if sub in ("create", "replace"):
                    flag = os.XATTR_CREATE if sub == "create" else os.XATTR_REPLACE
                    return os.setxattr(p, attr, value, flag, follow_symlinks=False)
                if sub == "get":
                    return os.getxattr(p, attr, follow_symlinks=False)
                if sub == "remove":
                    return os.removexattr(p, attr, follow_symlinks=False)
                return sorted(os.listxattr(p, follow_symlinks=False))

            return f"xattr {sub}({name}, {attr})", xattr
        if kind == "mknod":
            return f"mkfifo({name})", lambda s: os.mkfifo(s.p(name), 0o644)
        if kind == "readlink":
            return f"readlink({name})", lambda s: os.readlink(s.p(name))
        # readall: the whole content of a regular file, through a fresh descriptor

        def readall(s: Side) -> object:
            if not stat.S_ISREG(os.stat(s.p(name)).st_mode):  # (a FIFO would block)
                return "not a file"
            with open(s.p(name), "rb") as f:
                return f.read()

        return f"readall({name})", readall


def _final(path: str) -> tuple:
    """A name's stat and, for a regular file, its bytes."""
    st = os.lstat(path)
    return _stat(st), Path(path).read_bytes() if stat.S_ISREG(st.st_mode) else None


def _summary(v: object) -> str:
    text = repr(v)
    return text if len(text) < 200 else text[:200] + "..."


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", SEEDS)
def test_random_operations_match_a_local_directory(mdir, seed):
    local_root = Path(tempfile.mkdtemp(prefix="fs3-diff-"))
    mount_root = mdir / f"seed{seed}"
    mount_root.mkdir()
    sides = (Side(local_root), Side(mount_root))
    ops = Ops(random.Random(seed))
    old = os.umask(0o022)
    history: list[str] = []
    try:
        for step in range(STEPS):
            what, op = ops.draw()
            want, got = (_run(lambda s=s, op=op: op(s)) for s in sides)
            history.append(f"{step}: {what} -> {_summary(want)}")
            assert got == want, (
                f"seed {seed} step {step}: {what}\n local: {_summary(want)}\n mount: {_summary(got)}\n"
                + "\n".join(history[-int(os.environ.get("FS3_DIFF_HISTORY", "15")) :])
            )
        for s in sides:
            s.close_all()
        for name in NAMES:  # after every descriptor closed, the final tree and bytes agree
            want, got = (_run(lambda s=s, name=name: _final(s.p(name))) for s in sides)
            assert got == want, (seed, name, _summary(want), _summary(got))
    finally:
        os.umask(old)
        for s in sides:
            s.close_all()
        shutil.rmtree(local_root, ignore_errors=True)
