"""POSIX behaviour through the real FUSE mount: plain tools, Python I/O, errors, concurrency."""

from __future__ import annotations

import errno
import hashlib
import multiprocessing
import os
import shutil
import stat
import subprocess
import threading
import time

import pytest

pytestmark = pytest.mark.fuse


def sh(cmd: str, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["bash", "-c", cmd], cwd=cwd, capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise AssertionError(f"{cmd!r} failed ({res.returncode}): {res.stderr}")
    return res


def as_nobody(cmd: str) -> subprocess.CompletedProcess:
    """Run ``cmd`` as uid/gid 65534 (the kernel checks permissions against the mount's attributes)."""
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c", cmd],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_plain_tools_cp_cat_ls_mv_rm_dd_tar(mdir, tmp_path):
    src = tmp_path / "src"
    (src / "sub" / "deeper").mkdir(parents=True)
    for i in range(5):
        (src / f"f{i}.txt").write_text(f"file {i}\n" * (i * 100 + 1))
    (src / "sub" / "deeper" / "blob.bin").write_bytes(os.urandom(3 << 20))
    sh(f"cp -a {src} {mdir}/copy")
    sh(f"diff -r {src} {mdir}/copy")
    assert sh(f"cat {mdir}/copy/f3.txt").stdout == (src / "f3.txt").read_text()
    ls = sh(f"ls -l {mdir}/copy").stdout
    assert "f4.txt" in ls and "sub" in ls and ls.startswith("total")
    sh(f"mv {mdir}/copy/f0.txt {mdir}/copy/sub/moved.txt")
    assert (mdir / "copy/sub/moved.txt").read_text() == (src / "f0.txt").read_text()
    assert not (mdir / "copy/f0.txt").exists()
    sh(f"dd if=/dev/urandom of={tmp_path}/dd.src bs=1M count=8 status=none")
    sh(f"dd if={tmp_path}/dd.src of={mdir}/dd.out bs=1M status=none conv=fsync")
    sh(f"cmp {tmp_path}/dd.src {mdir}/dd.out")
    sh(f"tar -C {src} -cf {mdir}/a.tar .")
    (tmp_path / "untar").mkdir()
    sh(f"tar -C {tmp_path}/untar -xf {mdir}/a.tar")
    sh(f"diff -r {src} {tmp_path}/untar")
    (mdir / "x").mkdir()
    sh(f"tar -C {mdir}/x -xf {mdir}/a.tar && diff -r {src} {mdir}/x")
    sh(f"rm -r {mdir}/copy {mdir}/x")
    assert sorted(os.listdir(mdir)) == ["a.tar", "dd.out"]


def test_python_open_scandir_copytree(mdir, tmp_path):
    src = tmp_path / "tree"
    for d in ["a", "a/b", "c"]:
        (src / d).mkdir(parents=True)
    files = {f"{d}/n{i}": os.urandom(i * 1000 + 1) for d in ["a", "a/b", "c"] for i in range(3)}
    for rel, data in files.items():
        (src / rel).write_bytes(data)
    shutil.copytree(src, mdir / "tree")
    with os.scandir(mdir / "tree" / "a") as it:
        entries = {e.name: (e.is_dir(), e.is_file()) for e in it}
    assert entries == {"b": (True, False), "n0": (False, True), "n1": (False, True), "n2": (False, True)}
    shutil.copytree(mdir / "tree", tmp_path / "back")
    for rel, data in files.items():
        assert (tmp_path / "back" / rel).read_bytes() == data
    with open(mdir / "rw.bin", "w+b") as f:
        f.write(b"0123456789")
        f.seek(3)
        assert f.read(4) == b"3456"
        f.seek(0, os.SEEK_END)
        assert f.tell() == 10


def test_permissions_and_ownership(mdir):
    p = mdir / "secret"
    p.write_text("top secret")
    os.chmod(p, 0o600)
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600
    os.chmod(mdir, 0o777)
    res = as_nobody(f"cat {p}")
    assert res.returncode != 0 and "Permission denied" in res.stderr
    os.chmod(p, 0o644)
    assert as_nobody(f"cat {p}").stdout == "top secret"
    res = as_nobody(f"echo x >> {p}")
    assert res.returncode != 0 and "Permission denied" in res.stderr
    # a file created by another user is owned by that user
    assert as_nobody(f"echo mine > {mdir}/nobodys").returncode == 0
    st = os.stat(mdir / "nobodys")
    assert (st.st_uid, st.st_gid) == (65534, 65534)
    os.chown(p, 65534, 65534)
    assert os.stat(p).st_uid == 65534
    assert as_nobody(f"chmod 600 {p} && echo ok >> {p}").returncode == 0


def test_timestamps(mdir):
    p = mdir / "t"
    p.write_bytes(b"x")
    os.utime(p, ns=(1_000_000_000_123, 2_000_000_000_456))
    st = os.stat(p)
    assert st.st_atime_ns == 1_000_000_000_123 and st.st_mtime_ns == 2_000_000_000_456
    before = time.time_ns()
    time.sleep(0.01)
    with open(p, "ab") as f:
        f.write(b"more")
    st = os.stat(p)
    assert st.st_mtime_ns >= before - 10_000_000  # allow clock granularity
    assert st.st_ctime_ns >= before - 10_000_000


def test_rename_replaces_atomically(mdir):
    target = mdir / "current"
    target.write_bytes(b"A" * 100_000)
    stop = threading.Event()
    seen: list[bytes] = []
    errors: list[BaseException] = []

    def reader() -> None:
        while not stop.is_set():
            try:
                data = target.read_bytes()
            except BaseException as exc:
                errors.append(exc)
                return
            seen.append(data[:1] + bytes([len(set(data))]) + len(data).to_bytes(4, "little"))

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(20):
            tmp = mdir / f"tmp{i}"
            tmp.write_bytes(bytes([66 + i % 2]) * 100_000)
            os.rename(tmp, target)
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors
    # every read saw one whole version: a single repeated byte, full length
    torn = [
        (s[:1], s[1], int.from_bytes(s[2:], "little"))
        for s in seen
        if s[1] != 1 or int.from_bytes(s[2:], "little") != 100_000
    ]
    assert seen and not torn, f"{len(torn)} of {len(seen)} reads saw a torn version: {torn[:5]}"
    assert sorted(os.listdir(mdir)) == ["current"]
    # directory rename moves the subtree
    (mdir / "d1" / "sub").mkdir(parents=True)
    (mdir / "d1" / "sub" / "f").write_text("deep")
    os.rename(mdir / "d1", mdir / "d2")
    assert (mdir / "d2" / "sub" / "f").read_text() == "deep"
    assert not (mdir / "d1").exists()


def test_sparse_read_truncate_append(mdir):
    p = mdir / "sparse"
    with open(p, "wb") as f:
        f.seek(5 << 20)
        f.write(b"end")
    assert os.path.getsize(p) == (5 << 20) + 3
    with open(p, "rb") as f:
        assert f.read(4096) == bytes(4096)
        f.seek((5 << 20) - 2)
        assert f.read() == b"\0\0end"
    os.truncate(p, 10)
    assert p.read_bytes() == bytes(10)
    os.truncate(p, 20)
    assert p.read_bytes() == bytes(20)
    with open(p, "r+b") as f:
        f.write(b"head")
        f.truncate(2)
    assert p.read_bytes() == b"he"
    a = os.open(p, os.O_WRONLY | os.O_APPEND)
    b = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        for _ in range(3):
            os.write(a, b"aa")
            os.write(b, b"bbb")
    finally:
        os.close(a)
        os.close(b)
    assert p.read_bytes() == b"he" + b"aabbb" * 3


def test_fsync_and_unlink_while_open(mdir):
    p = mdir / "synced"
    fd = os.open(p, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.write(fd, b"durable")
        os.fsync(fd)
        os.fdatasync(fd)
        os.unlink(p)
        assert not p.exists()
        assert os.pread(fd, 7, 0) == b"durable"
        assert os.fstat(fd).st_size == 7
    finally:
        os.close(fd)


def test_symlink_readlink_hardlink(mdir):
    (mdir / "target").write_text("t")
    os.symlink("target", mdir / "link")
    assert os.readlink(mdir / "link") == "target"
    assert (mdir / "link").read_text() == "t"
    assert stat.S_ISLNK(os.lstat(mdir / "link").st_mode)
    os.link(mdir / "target", mdir / "hard")
    assert os.stat(mdir / "hard").st_ino == os.stat(mdir / "target").st_ino
    assert os.stat(mdir / "target").st_nlink == 2
    os.unlink(mdir / "target")
    assert (mdir / "hard").read_text() == "t"


def _writer(path: str, seed: int, size: int) -> str:
    data = hashlib.sha256(str(seed).encode()).digest() * (size // 32)
    with open(path, "wb") as f:
        for off in range(0, len(data), 256 << 10):
            f.write(data[off : off + (256 << 10)])
        f.flush()
        os.fsync(f.fileno())
    return hashlib.sha256(data).hexdigest()


def test_two_processes_write_different_files_at_once(mdir):
    ctx = multiprocessing.get_context("spawn")
    paths = [str(mdir / f"w{i}") for i in range(2)]
    with ctx.Pool(2) as pool:
        digests = pool.starmap(_writer, [(p, i, 6 << 20) for i, p in enumerate(paths)])
    for p, d in zip(paths, digests, strict=True):
        with open(p, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == d


@pytest.mark.parametrize(
    "action, code",
    [
        (lambda d: open(d / "missing"), errno.ENOENT),
        (lambda d: os.stat(d / "no" / "such"), errno.ENOENT),
        (lambda d: (os.mkdir(d / "e"), os.mkdir(d / "e")), errno.EEXIST),
        (
            lambda d: (open(d / "x", "w").close(), os.open(d / "x", os.O_CREAT | os.O_EXCL | os.O_WRONLY)),
            errno.EEXIST,
        ),
        (lambda d: (os.makedirs(d / "ne" / "child"), os.rmdir(d / "ne")), errno.ENOTEMPTY),
        (lambda d: (open(d / "f", "w").close(), os.listdir(d / "f")), errno.ENOTDIR),
        (lambda d: (os.mkdir(d / "dd"), open(d / "dd", "w")), errno.EISDIR),
        (lambda d: os.rename(d / "nothing", d / "else"), errno.ENOENT),
    ],
    ids=[
        "open-missing",
        "stat-missing-parent",
        "mkdir-exists",
        "create-excl",
        "rmdir-notempty",
        "listdir-file",
        "open-dir-for-write",
        "rename-missing",
    ],
)
def test_errno_for_each_failure(mdir, action, code):
    with pytest.raises(OSError) as ei:
        action(mdir)
    assert ei.value.errno == code


def test_eacces_for_other_user(mdir):
    os.chmod(mdir, 0o755)
    res = as_nobody(f"python3 -c \"import os; os.mkdir('{mdir}/nope')\"")
    assert "PermissionError" in res.stderr and "Errno 13" in res.stderr


def test_mount_raises_the_kernel_read_ahead(mounted):
    """Sequential readers get 1 MiB requests, several in flight, instead of the 128 KiB default."""
    from fs3.fuse.mount import mount_device

    if os.geteuid() != 0:
        pytest.skip("setting a mount's read-ahead needs root")
    dev = mount_device(mounted.path)
    assert dev is not None and ":" in dev
    ra = f"/sys/class/bdi/{dev}/read_ahead_kb"
    deadline = time.monotonic() + 10  # the daemon sets it right after the kernel's INIT exchange
    while open(ra).read().strip() != "4096" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert open(ra).read().strip() == "4096"
    data = os.urandom(3 << 20)
    p = mounted.path / f"ra-{os.getpid()}.bin"
    p.write_bytes(data)
    assert p.read_bytes() == data
    p.unlink()
