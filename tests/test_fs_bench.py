"""Both fs3 benchmarks run end to end at tiny sizes and print the expected rows (no timing assertions)."""

from __future__ import annotations

import json
import os
import shutil

import pytest
from click.testing import CliRunner


def _rows(tables: list[dict], title_part: str) -> list[dict]:
    (table,) = [t for t in tables if title_part in t["title"]]
    return table["rows"]


def test_fs3_bench_tables_via_haictl() -> None:
    """`haictl bench fs`: sequential rows for replicas x threads x op, metadata rows for op x threads."""
    from fireflyer.cli.bench import bench

    args = ["fs", "--size", "8M", "--repeats", "1", "--files", "20", "--json"]
    res = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    tables = json.loads(res.output)
    seq = _rows(tables, "sequential I/O")
    assert {(r["op"], r["replicas"], r["threads"]) for r in seq} == {
        (op, rep, t) for op in ("write", "read", "read(grpc)") for rep in (3, 1) for t in (1, 4)
    }
    for r in seq:
        for col in ("fs3(GB/s)", "local(GB/s)", "socket(GB/s)", "fs3/local", "fs3/socket"):
            assert r[col] > 0, (col, r)
    meta = _rows(tables, "metadata")
    assert {(r["op"], r["threads"]) for r in meta} == {
        (op, t) for op in ("create", "stat", "listdir") for t in (1, 4)
    }
    assert all(r["fs3(ops/s)"] > 0 and r["local(ops/s)"] > 0 for r in meta)


def test_table_text_has_units_and_rows() -> None:
    """The text form is nccl-tests-like: a `#` title and header with units, one line per row."""
    from ffcommon.bench import Table

    t = Table("demo", ["op", "size(MiB)", "fs3(GB/s)"], notes=["a note"])
    t.add("read", 8.0, 1.2345)
    text = t.render().splitlines()
    assert text[0] == "# demo" and text[1] == "#   a note"
    assert "size(MiB)" in text[2] and "fs3(GB/s)" in text[2]
    assert text[3].split() == ["read", "8.000", "1.234"]


def _fuse_missing() -> str | None:
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        return "/dev/fuse or fusermount3 missing"
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        return "pyfuse3 not installed"
    return None


@pytest.mark.fuse
@pytest.mark.skipif(_fuse_missing() is not None, reason=str(_fuse_missing()))
def test_haictl_fs_bench_local(tmp_path) -> None:
    """`haictl fs bench --local`: dd, small-file and dataset rows; the mount is gone afterwards."""
    from fireflyer.cli.fs import fs
    from fs3.fuse.mount import is_mounted

    args = ["bench", "--local", "--size", "8M", "--files", "20", "--samples", "40", "--reads", "80",
            "--repeats", "1", "--data-dir", str(tmp_path), "--json"]  # fmt: skip
    res = CliRunner().invoke(fs, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    tables = json.loads(res.output[res.output.index("[") :])  # status lines go to stderr, mixed here
    dd = _rows(tables, "dd-style")
    assert [r["op"] for r in dd] == ["write", "read"]
    assert all(r["fuse(GB/s)"] > 0 and r["native(GB/s)"] > 0 and r["local(GB/s)"] > 0 for r in dd)
    assert [r["op"] for r in _rows(tables, "small files")] == ["create", "stat", "listdir"]
    ds = _rows(tables, "sample reads")
    assert [(r["layout"], r["access"], r["via"]) for r in ds] == [
        ("files", "open+read", "fuse"),
        ("packed", "read(i)", "fuse"),
        ("packed", "read_batch(64)", "fuse"),
        ("packed", "read(i)", "native"),
        ("packed", "read_batch(64)", "native"),
    ]
    # the temp dir (mount point included) is removed and nothing of ours is left mounted
    assert not any(is_mounted(p) for p in tmp_path.glob("fs3-fsbench-*/mnt"))
    assert list(tmp_path.iterdir()) == []
