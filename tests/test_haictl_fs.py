"""`haictl fs` end to end: every namespace/data subcommand through the real CLI against a real local cluster.

One cluster per module (mgmtd, meta, 3 storage servers as processes); commands go through
``fireflyer.cli.main:cli`` with click's CliRunner (and a subprocess for the exit-status/no-traceback
checks), results are checked with a native ``FS3Client`` and byte comparisons.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fireflyer.cli.main import cli
from fs3 import LocalCluster, LocalClusterConfig
from fs3.dataset import PackedReader

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    with LocalCluster(LocalClusterConfig(), work_dir=tmp_path_factory.mktemp("fs3") / "c") as c:
        yield c


@pytest.fixture(scope="module")
def client(cluster):
    return cluster.client()


def _fs(cluster, *args: str) -> Result:
    res = CliRunner().invoke(cli, ["fs", "--mgmtd", cluster.mgmtd_address, *args])
    # a command either succeeds or exits through sys.exit/click: never an uncaught exception
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exc_info
    return res


def _ok(cluster, *args: str) -> Result:
    res = _fs(cluster, *args)
    assert res.exit_code == 0, (args, res.output)
    return res


def _err(cluster, *args: str, code: int = 1) -> str:
    res = _fs(cluster, *args)
    assert res.exit_code == code, (args, res.output)
    assert "Traceback" not in res.output
    assert res.stderr.strip(), "the error goes to stderr"
    return res.stderr


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mkdir_and_ls(cluster, client) -> None:
    _ok(cluster, "mkdir", "/ls")
    _ok(cluster, "mkdir", "-p", "/ls/p/q/r")
    _ok(cluster, "mkdir", "-p", "/ls/p/q")  # exists: no error with -p
    _ok(cluster, "mkdir", "-m", "700", "/ls/private")
    assert "exists" in _err(cluster, "mkdir", "/ls")
    assert "/nope" in _err(cluster, "mkdir", "/nope/x")  # missing parent without -p
    client.write_bytes("/ls/f.txt", b"hello")

    assert _ok(cluster, "ls", "/ls").output.split() == ["f.txt", "p", "private"]
    assert _ok(cluster, "ls", "/ls/f.txt").output.split() == ["f.txt"]
    assert _ok(cluster, "ls", "/").output.split().count("ls") == 1

    long_lines = _ok(cluster, "ls", "-l", "/ls").output.splitlines()
    assert len(long_lines) == 3
    by_name = {ln.split()[-1]: ln.split() for ln in long_lines}
    assert by_name["p"][0] == "drwxr-xr-x" and by_name["private"][0] == "drwx------"
    assert by_name["f.txt"][0] == "-rw-r--r--" and by_name["f.txt"][4] == "5"

    rows = json.loads(_ok(cluster, "ls", "--json", "/ls").output)
    assert [r["name"] for r in rows] == ["f.txt", "p", "private"]
    f = rows[0]
    assert f["type"] == "file" and f["size"] == 5 and f["path"] == "/ls/f.txt"
    assert f["inode"] == client.stat("/ls/f.txt").st_ino
    assert rows[1]["type"] == "dir" and rows[2]["mode"] == "0700"


def test_stat_json(cluster, client) -> None:
    client.makedirs("/st")
    client.write_bytes("/st/a", b"x" * 1000)
    client.symlink("/st/a", "/st/link")
    d = json.loads(_ok(cluster, "stat", "/st/a").output)
    st = client.stat("/st/a")
    assert d["inode"] == st.st_ino and d["type"] == "file" and d["size"] == 1000
    assert d["mode"] == f"{st.st_mode & 0o7777:04o}" == "0644"
    assert d["nlink"] == 1 and d["uid"] == 0 and d["mtime"] == st.st_mtime
    assert d["chunk_size"] == st.chunk_size > 0 and d["chains"] == list(st.chains)
    both = json.loads(_ok(cluster, "stat", "/st", "fs3:/st/a").output)
    assert [x["type"] for x in both] == ["dir", "file"]
    assert both[0]["mode"] == "0755" and both[0]["inode"] == client.stat("/st").st_ino
    link_row = next(r for r in json.loads(_ok(cluster, "ls", "--json", "/st").output) if r["name"] == "link")
    assert link_row["type"] == "symlink" and link_row["target"] == "/st/a"
    assert "absolute" in _err(cluster, "stat", "st/a", code=2)  # relative path: usage error


def test_cp_roundtrip_byte_identical(cluster, client, tmp_path: Path) -> None:
    _ok(cluster, "mkdir", "-p", "/cp")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * (1 << 20) + 12345))  # a few chunks plus a partial one
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")

    out = _ok(cluster, "cp", str(big), "fs3:/cp/big.bin").output
    assert "MB/s" in out and "fs3:/cp/big.bin" in out
    assert client.stat("/cp/big.bin").st_size == big.stat().st_size
    _ok(cluster, "cp", "--block-size", "512K", "fs3:/cp/big.bin", "fs3:/cp/big2.bin")  # fs3 -> fs3
    _ok(cluster, "cp", "--progress", "fs3:/cp/big2.bin", str(tmp_path / "back.bin"))  # fs3 -> local
    assert _sha(tmp_path / "back.bin") == _sha(big)
    assert hashlib.sha256(client.read_bytes("/cp/big2.bin")).hexdigest() == _sha(big)
    assert subprocess.run(["cmp", str(big), str(tmp_path / "back.bin")]).returncode == 0

    _ok(cluster, "cp", str(empty), "fs3:/cp/empty.bin")
    assert client.stat("/cp/empty.bin").st_size == 0
    _ok(cluster, "cp", "fs3:/cp/empty.bin", "fs3:/cp/empty2.bin")
    _ok(cluster, "cp", "fs3:/cp/empty2.bin", str(tmp_path / "empty.back"))
    assert (tmp_path / "empty.back").read_bytes() == b""

    # overwrite an existing (longer) destination: truncated, not merged
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    _ok(cluster, "cp", str(small), "fs3:/cp/big2.bin")
    assert client.read_bytes("/cp/big2.bin") == b"abc"


def test_cp_into_existing_directory(cluster, client, tmp_path: Path) -> None:
    client.makedirs("/cpdir/into")
    src = tmp_path / "sample.dat"
    src.write_bytes(os.urandom(70000))
    _ok(cluster, "cp", str(src), "fs3:/cpdir/into")
    _ok(cluster, "cp", str(src), "fs3:/cpdir/into/")
    assert client.listdir("/cpdir/into") == ["sample.dat"]
    assert client.read_bytes("/cpdir/into/sample.dat") == src.read_bytes()
    client.makedirs("/cpdir/other")
    _ok(cluster, "cp", "fs3:/cpdir/into/sample.dat", "fs3:/cpdir/other")
    assert client.read_bytes("/cpdir/other/sample.dat") == src.read_bytes()
    local_dir = tmp_path / "down"
    local_dir.mkdir()
    _ok(cluster, "cp", "fs3:/cpdir/other/sample.dat", str(local_dir))
    assert (local_dir / "sample.dat").read_bytes() == src.read_bytes()

    assert "is a directory" in _err(cluster, "cp", "fs3:/cpdir/into", str(tmp_path / "x"))
    assert "is a directory" in _err(cluster, "cp", str(local_dir), "fs3:/cpdir/x")
    assert not client.exists("/cpdir/x")
    assert "same file" in _err(cluster, "cp", "fs3:/cpdir/into/sample.dat", "fs3:/cpdir/into")
    assert client.read_bytes("/cpdir/into/sample.dat") == src.read_bytes()  # not clobbered
    assert "fs3:" in _err(cluster, "cp", str(src), str(tmp_path / "y"), code=2)  # neither is on fs3


def test_mv_rename_and_into_dir(cluster, client) -> None:
    client.makedirs("/mv/dir")
    client.write_bytes("/mv/a", b"payload")
    ino = client.stat("/mv/a").st_ino
    _ok(cluster, "mv", "/mv/a", "/mv/b")
    assert not client.exists("/mv/a")
    assert client.stat("/mv/b").st_ino == ino and client.read_bytes("/mv/b") == b"payload"
    _ok(cluster, "mv", "fs3:/mv/b", "/mv/dir")
    assert client.listdir("/mv") == ["dir"] and client.stat("/mv/dir/b").st_ino == ino
    client.write_bytes("/mv/c", b"new")
    _ok(cluster, "mv", "/mv/c", "/mv/dir/b")  # replaces the existing file atomically
    assert client.read_bytes("/mv/dir/b") == b"new"
    assert "/mv/missing" in _err(cluster, "mv", "/mv/missing", "/mv/z")


def test_rm(cluster, client) -> None:
    client.makedirs("/rm/tree/sub/deeper")
    for p in ("/rm/file", "/rm/tree/x", "/rm/tree/sub/y", "/rm/tree/sub/deeper/z"):
        client.write_bytes(p, b"data")
    client.symlink("/rm/tree", "/rm/tree-link")
    _ok(cluster, "rm", "/rm/file")
    assert not client.exists("/rm/file")

    msg = _err(cluster, "rm", "/rm/tree")
    assert "/rm/tree" in msg and "is a directory" in msg and "-r" in msg
    assert client.exists("/rm/tree/sub/deeper/z")
    _ok(cluster, "rm", "/rm/tree-link")  # the link goes, not what it points at
    assert client.exists("/rm/tree/x")

    _ok(cluster, "rm", "-r", "/rm/tree")
    assert client.listdir("/rm") == []
    assert "/rm/gone" in _err(cluster, "rm", "/rm/gone")
    _ok(cluster, "rm", "-f", "/rm/gone")
    client.makedirs("/rm/empty")
    assert "is a directory" in _err(cluster, "rm", "/rm/empty")
    _ok(cluster, "rm", "-r", "/rm/empty")
    assert "root" in _err(cluster, "rm", "-r", "/")


def test_df(cluster, client) -> None:
    client.makedirs("/df")
    size = 2 << 20
    client.write_bytes("/df/blob", os.urandom(size))
    info = json.loads(_ok(cluster, "df", "--json").output)
    assert info["total_bytes"] > 0 and 0 < info["free_bytes"] <= info["total_bytes"]
    assert info["used_bytes"] == info["total_bytes"] - info["free_bytes"]
    assert info["file_bytes"] >= size and info["inodes"] > 0
    routing = cluster.routing()
    expected = {(t.target_id, t.node_id, ch.chain_id) for ch in routing.chains for t in ch.targets}
    got = {(t["target_id"], t["node_id"], t["chain_id"]) for t in info["targets"]}
    assert got == expected and len(info["targets"]) == len(expected) == 18
    for t in info["targets"]:
        assert t["state"] == "SERVING" and t["alive"] and t["address"]
        assert t["data_address"].rpartition(":")[2].isdigit()  # its data port, as advertised to mgmtd
        assert t["chunks"] >= 0 and t["used_bytes"] >= 0 and t["disk_total_bytes"] > 0
    replicas = len(routing.chains[0].targets)
    assert sum(t["used_bytes"] for t in info["targets"]) >= replicas * size
    assert sum(t["chunks"] for t in info["targets"]) >= replicas * 2

    text = _ok(cluster, "df").output
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["Filesystem", "Size", "Used", "Avail", "Use%"]
    assert lines[1].startswith("fs3")
    target_lines = [ln for ln in lines if ln.strip() and ln.split()[0].isdigit()]
    assert {int(ln.split()[0]) for ln in target_lines} == {t for t, _, _ in expected}
    assert all(ln.split()[3] == "SERVING" for ln in target_lines)


def test_pack_and_read_back(cluster, client, tmp_path: Path) -> None:
    src = tmp_path / "images"
    files: dict[str, bytes] = {}
    for i in range(25):
        rel = f"class{i % 3}/img{i:03d}.bin"
        files[rel] = os.urandom(100 + 37 * i)
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(files[rel])
    (src / "class0" / "empty.bin").write_bytes(b"")
    files["class0/empty.bin"] = b""
    client.makedirs("/ds")
    out = _ok(cluster, "pack", str(src), "fs3:/ds/images.pack").output
    assert "26 samples" in out
    assert client.listdir("/ds") == ["images.pack"]  # no temporary left behind
    with PackedReader.open("/ds/images.pack", client=client) as r:
        names = r.metadata["names"]
        assert names == sorted(files) and len(r) == 26
        for i in (0, 7, len(r) - 1):
            assert r.read(i) == files[names[i]]
        assert r.read_batch(list(range(len(r)))) == [files[n] for n in names]

    local_pack = tmp_path / "local.pack"
    assert "26 samples" in _ok(cluster, "pack", str(src), str(local_pack)).output
    with PackedReader.open(str(local_pack)) as r:
        assert r.read(3) == files[r.metadata["names"][3]]
    (tmp_path / "nothing").mkdir()
    assert "no regular files" in _err(cluster, "pack", str(tmp_path / "nothing"), "fs3:/ds/none.pack")


def test_missing_paths_clear_errors(cluster) -> None:
    for args in (
        ["ls", "/missing"],
        ["ls", "-l", "/missing/deeper"],
        ["stat", "/missing"],
        ["cp", "fs3:/missing", "/tmp/never-written"],
        ["mv", "/missing", "/elsewhere"],
        ["rm", "-r", "/missing"],
    ):
        msg = _err(cluster, *args)
        assert msg.startswith("haictl fs: /missing") and msg.count("\n") == 1, (args, msg)
    assert not os.path.exists("/tmp/never-written")
    # the real process: exit status 1, one line on stderr, nothing on stdout
    p = subprocess.run(
        [sys.executable, "-m", "fireflyer.cli.main", "fs", "--mgmtd", cluster.mgmtd_address, "stat", "/missing"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert p.returncode == 1 and p.stdout == "", p
    assert p.stderr.startswith("haictl fs: /missing:") and "Traceback" not in p.stderr


def test_unreachable_cluster_fails_fast() -> None:
    t0 = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "fireflyer.cli.main", "fs", "--mgmtd", "127.0.0.1:1", "ls", "/"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert time.monotonic() - t0 < 15
    assert p.returncode == 1 and "Traceback" not in p.stderr, p
    assert "cannot reach the fs3 cluster at 127.0.0.1:1" in p.stderr
    for args in (["df"], ["stat", "/x"], ["mkdir", "/x"]):
        res = CliRunner().invoke(cli, ["fs", "--mgmtd", "127.0.0.1:1", *args])
        assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
        assert "cannot reach" in res.stderr


def test_no_cluster_address_is_a_usage_error(tmp_path: Path) -> None:
    res = CliRunner().invoke(cli, ["fs", "ls", "/"], env={"FS3_MGMTD": None, "HOME": str(tmp_path)})
    assert res.exit_code == 2 and "no cluster address" in res.stderr
