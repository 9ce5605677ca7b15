"""The mount answers like a local file system: each test runs the same steps on a local temp dir (ext4
or tmpfs on the same machine) and in the mount, and compares what they return."""

from __future__ import annotations

import ctypes
import errno
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.fuse

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD = -100
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2


def renameat2(src: Path, dst: Path, flags: int) -> int:
    """renameat2(2); 0 or the errno it failed with."""
    rc = _libc.renameat2(AT_FDCWD, os.fsencode(src), AT_FDCWD, os.fsencode(dst), ctypes.c_uint(flags))
    return 0 if rc == 0 else ctypes.get_errno()


def both(mdir: Path, steps: Callable[[Path], object]) -> tuple[object, object]:
    """(what ``steps`` returns in a fresh local dir, what it returns in a fresh dir of the mount)."""
    with tempfile.TemporaryDirectory(prefix="fs3-local-") as local:
        want = steps(Path(local))
    d = mdir / "run"
    d.mkdir()
    return want, steps(d)


def _umasked(mask: int, fn: Callable[[], object]) -> object:
    old = os.umask(mask)
    try:
        return fn()
    finally:
        os.umask(old)


def test_modes_are_exact_including_zero_and_umask_is_the_callers(mdir):
    def steps(d: Path) -> list[int]:
        out = []
        for mask in (0, 0o022, 0o077):

            def make(mask: int = mask) -> None:
                os.close(os.open(d / f"f0-{mask}", os.O_CREAT | os.O_WRONLY, 0))
                os.close(os.open(d / f"f777-{mask}", os.O_CREAT | os.O_WRONLY, 0o777))
                os.mkdir(d / f"d0-{mask}", 0)
                os.mkdir(d / f"d7777-{mask}", 0o7777)

            _umasked(mask, make)
            out += [stat.S_IMODE(os.lstat(d / f"{n}-{mask}").st_mode) for n in ("f0", "f777", "d0", "d7777")]
        return out

    want, got = both(mdir, steps)
    assert got == want
    assert want[:4] == [0, 0o777, 0, 0o1777]  # mkdir drops set-id bits


def test_readdir_has_dot_and_dotdot(mdir):
    def steps(d: Path) -> list[tuple[str, bool]]:
        (d / "sub").mkdir()
        (d / "sub" / "f").write_bytes(b"x")
        out = subprocess.run(["ls", "-a1i", str(d / "sub")], capture_output=True, text=True, check=True)
        names = {}
        for line in out.stdout.split("\n"):
            if line.strip():
                ino, name = line.split(None, 1)
                names[name] = int(ino)
        return [
            (".", names["."] == os.stat(d / "sub").st_ino),
            ("..", names[".."] == os.stat(d).st_ino),
            ("f", names["f"] == os.stat(d / "sub" / "f").st_ino),
            ("count", len(names) == 3),
        ]

    want, got = both(mdir, steps)
    assert got == want == [(".", True), ("..", True), ("f", True), ("count", True)]


def test_rename_noreplace_and_exchange_match_local(mdir):
    def steps(d: Path) -> list[object]:
        (d / "a").write_bytes(b"A")
        (d / "b").write_bytes(b"BB")
        (d / "dir").mkdir()
        (d / "dir" / "in").write_bytes(b"I")
        out: list[object] = [
            renameat2(d / "a", d / "b", RENAME_NOREPLACE),
            renameat2(d / "a", d / "c", RENAME_NOREPLACE),
            renameat2(d / "c", d / "missing", RENAME_EXCHANGE),
            renameat2(d / "c", d / "b", RENAME_NOREPLACE | RENAME_EXCHANGE),
            renameat2(d / "c", d / "b", RENAME_EXCHANGE),
            (d / "c").read_bytes(),
            (d / "b").read_bytes(),
            renameat2(d / "b", d / "dir", RENAME_EXCHANGE),
            (d / "dir").read_bytes(),
            sorted(os.listdir(d / "b")),
            renameat2(d / "b", d / "b" / "in", RENAME_EXCHANGE),
        ]
        return out

    want, got = both(mdir, steps)
    assert got == want
    assert want[:5] == [errno.EEXIST, 0, errno.ENOENT, errno.EINVAL, 0]


def test_nanosecond_times_and_utime_omit(mdir):
    def steps(d: Path) -> list[int]:
        p = d / "t"
        p.write_bytes(b"x")
        os.utime(p, ns=(1_700_000_000_123_456_789, 1_700_000_001_987_654_321))
        st = os.stat(p)
        out = [st.st_atime_ns, st.st_mtime_ns]
        # UTIME_OMIT for atime, a new mtime: only mtime moves
        _libc_utimensat(p, None, 1_600_000_000_000_000_001)
        st = os.stat(p)
        return [*out, st.st_atime_ns, st.st_mtime_ns]

    want, got = both(mdir, steps)
    a, m, m2 = 1_700_000_000_123_456_789, 1_700_000_001_987_654_321, 1_600_000_000_000_000_001
    assert got == want == [a, m, a, m2]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


UTIME_OMIT = (1 << 30) - 2


def _libc_utimensat(p: Path, atime_ns: int | None, mtime_ns: int | None) -> None:
    ts = (_Timespec * 2)()
    for i, t in enumerate((atime_ns, mtime_ns)):
        ts[i] = _Timespec(0, UTIME_OMIT) if t is None else _Timespec(t // 10**9, t % 10**9)
    if _libc.utimensat(AT_FDCWD, os.fsencode(p), ts, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(p))


def _err(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except OSError as exc:
        return errno.errorcode[exc.errno]


def test_xattrs_match_local(mdir):
    def steps(d: Path) -> list[object]:
        p = d / "f"
        p.write_bytes(b"x")
        (d / "dir").mkdir()
        os.symlink("f", d / "ln")
        return [
            _err(lambda: os.setxattr(p, "user.a", b"1")),
            _err(lambda: os.setxattr(p, "user.empty", b"")),
            _err(lambda: os.setxattr(p, "trusted.t", b"T")),
            _err(lambda: os.getxattr(p, "user.a")),
            _err(lambda: os.getxattr(p, "user.empty")),
            _err(lambda: os.getxattr(p, "user.none")),
            _err(lambda: os.setxattr(p, "user.a", b"2", os.XATTR_CREATE)),
            _err(lambda: os.setxattr(p, "user.b", b"2", os.XATTR_REPLACE)),
            _err(lambda: os.setxattr(p, "user.a", b"22", os.XATTR_REPLACE)),
            _err(lambda: os.getxattr(p, "user.a")),
            _err(lambda: os.setxattr(p, "user." + "n" * 251, b"1")),
            _err(lambda: os.setxattr(p, "user.big", b"v" * 65537)),
            _err(lambda: os.setxattr(p, "nonamespace.x", b"1")),
            sorted(_err(lambda: os.listxattr(p))),  # type: ignore[arg-type]
            _err(lambda: os.removexattr(p, "user.empty")),
            _err(lambda: os.removexattr(p, "user.empty")),
            sorted(os.listxattr(p)),
            _err(lambda: os.setxattr(d / "dir", "user.d", b"D")),
            _err(lambda: os.listxattr(d / "dir")),
            _err(lambda: os.setxattr(d / "ln", "user.l", b"L", follow_symlinks=False)),
            _err(lambda: os.getxattr(d / "ln", "user.a")),  # followed to f
        ]

    want, got = both(mdir, steps)
    assert got == want
    assert want[5] == "ENODATA" and want[10] == "ERANGE" and want[11] == "E2BIG"


def test_xattrs_for_other_users_as_linux_checks_them(mdir, mounted):
    p = mdir / "shared"
    p.write_bytes(b"x")
    os.chmod(p, 0o644)
    os.setxattr(p, "user.a", b"1")
    os.setxattr(p, "trusted.t", b"T")
    script = (
        "import os, sys\n"
        "p = sys.argv[1]\n"
        "def e(f):\n"
        "    try:\n"
        "        return repr(f())\n"
        "    except OSError as x:\n"
        "        return os.strerror(x.errno)\n"
        "print(e(lambda: os.getxattr(p, 'user.a')), e(lambda: os.setxattr(p, 'user.a', b'2')),\n"
        "      e(lambda: os.getxattr(p, 'trusted.t')), e(lambda: sorted(os.listxattr(p))),\n"
        "      e(lambda: os.setxattr(p, 'security.s', b'2')), sep='|')\n"
    )
    out = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "python3", "-c", script, str(p)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    got = out.stdout.strip().split("|")
    perm, nodata = os.strerror(errno.EACCES), os.strerror(errno.ENODATA)
    assert got == ["b'1'", perm, nodata, "['user.a']", os.strerror(errno.EPERM)], got


def test_cp_a_copies_xattrs_both_ways(mdir, tmp_path):
    src = tmp_path / "src"
    src.write_bytes(b"payload")
    os.setxattr(src, "user.origin", b"local")
    subprocess.run(["cp", "-a", str(src), str(mdir / "in")], check=True, timeout=60)
    assert os.getxattr(mdir / "in", "user.origin") == b"local"
    os.setxattr(mdir / "in", "user.more", b"mount")
    subprocess.run(["cp", "-a", str(mdir / "in"), str(mdir / "copy")], check=True, timeout=60)
    subprocess.run(["cp", "-a", str(mdir / "copy"), str(tmp_path / "back")], check=True, timeout=60)
    for p in (mdir / "copy", tmp_path / "back"):
        assert sorted(os.listxattr(p)) == ["user.more", "user.origin"]
        assert os.getxattr(p, "user.more") == b"mount" and p.read_bytes() == b"payload"


def test_fifos_sockets_and_device_nodes(mdir):
    import socket
    import threading

    def steps(d: Path) -> list[object]:
        os.mkfifo(d / "fifo", 0o640)
        os.mknod(d / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        st_f, st_n = os.lstat(d / "fifo"), os.lstat(d / "null")
        return [
            stat.S_ISFIFO(st_f.st_mode),
            stat.S_IMODE(st_f.st_mode) & ~0o022,
            stat.S_ISCHR(st_n.st_mode),
            os.major(st_n.st_rdev),
            os.minor(st_n.st_rdev),
            st_f.st_size,
        ]

    want, got = both(mdir, steps)
    assert got == want == [True, 0o640, True, 1, 3, 0]
    # the kernel moves a FIFO's bytes itself
    fifo = mdir / "run" / "fifo"
    got_bytes: list[bytes] = []
    reader = threading.Thread(target=lambda: got_bytes.append(fifo.read_bytes()))
    reader.start()
    fifo.write_bytes(b"through the pipe")
    reader.join(timeout=30)
    assert got_bytes == [b"through the pipe"]
    # a UNIX socket bound in the mount takes connections
    path = str(mdir / "run" / "sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    try:
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        cli = socket.socket(socket.AF_UNIX)
        cli.connect(path)
        conn, _ = srv.accept()
        cli.sendall(b"hello")
        assert conn.recv(5) == b"hello"
        conn.close()
        cli.close()
    finally:
        srv.close()
    # the mount is nodev: a device node there cannot be opened
    with pytest.raises(PermissionError):
        open(mdir / "run" / "null", "rb")


def test_open_files_survive_unlink_and_replace(mdir):
    data = os.urandom(8 << 20)
    p = mdir / "ckpt"
    p.write_bytes(data)
    # cat <&3 after rm, as a shell does it
    out = subprocess.run(
        ["bash", "-c", f"exec 3<'{p}'; rm '{p}'; cat <&3 | sha256sum"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    import hashlib

    assert out.returncode == 0 and out.stdout.split()[0] == hashlib.sha256(data).hexdigest()
    assert not p.exists()
    # Python reads a checkpoint that another writer atomically replaced meanwhile
    p.write_bytes(data)
    with open(p, "rb") as f:
        head = f.read(4096)
        new = mdir / "ckpt.tmp"
        new.write_bytes(b"N" * 1000)
        os.replace(new, p)
        assert p.read_bytes() == b"N" * 1000
        rest = f.read()
    assert head + rest == data


def test_paths_deeper_than_path_max(mdir, mounted):
    """Each syscall's path is short (relative to the cwd), the absolute path far over 4096 bytes."""
    if mounted.kind == "local":
        pytest.skip("the passthrough backend calls the host with absolute paths (host PATH_MAX)")
    script = (
        "import os, sys\n"
        "os.chdir(sys.argv[1])\n"
        "for i in range(30):\n"
        "    n = f'{i:03d}' + 'd' * 197\n"
        "    os.mkdir(n)\n"
        "    os.chdir(n)\n"
        "open('f', 'w').write('deep')\n"
        "print(len(os.getcwd()), open('f').read())\n"
    )
    out = subprocess.run(["python3", "-c", script, str(mdir)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    length, content = out.stdout.split()
    assert int(length) > 6000 and content == "deep"


def test_symlink_by_another_user_owns_the_link_not_its_target(mdir):
    target = mdir / "roots"
    target.write_bytes(b"secret")
    os.chmod(mdir, 0o777)
    out = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "ln",
            "-s",
            str(target),
            str(mdir / "ln"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (os.lstat(mdir / "ln").st_uid, os.stat(target).st_uid) == (65534, 0)
    os.utime(mdir / "ln", ns=(5, 6), follow_symlinks=False)  # the link's own times, target untouched
    assert os.lstat(mdir / "ln").st_mtime_ns == 6 and os.stat(target).st_mtime_ns != 6
