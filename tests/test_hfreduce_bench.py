"""``python -m hfreduce.bench`` under mpirun: the table has a row per size and every implementation's columns."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import mpirun_argv

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.mpi
def test_bench_table_np2_checked(tmp_path: Path):
    out_json = tmp_path / "bench.json"
    argv = mpirun_argv(2, ["-x", "PYTHONPATH"]) + [
        sys.executable, "-m", "hfreduce.bench", "--min-bytes", "1K", "--max-bytes", "16K", "--factor", "4",
        "--check", "--iters", "3", "--warmup", "1", "--memcpy-mb", "8", "--json", str(out_json),
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HFREDUCE_LOCAL_WORLD_SIZE", None)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    head = next(ln for ln in lines if ln.split()[:3] == ["size", "count", "type"])
    assert head.split().count("time(us)") == 4 and head.split().count("busbw") == 4
    for col in ("hfr-shm/mpi", "hfr/mpi", "hfr-shm/gloo", "hfr/gloo"):
        assert col in head.split()
    groups = next(ln for ln in lines if "---- hfr-shm ----" in ln)
    for impl in ("hfr", "mpi", "gloo"):
        assert f"---- {impl} ----" in groups
    rows = [ln.split() for ln in lines if ln.split() and ln.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [1024, 4096, 16384]
    for r in rows:
        assert int(r[1]) == int(r[0]) // 4 and r[2] == "float32"
        assert len(r) == 3 + 4 * 3 + 4
    assert any(ln.startswith("# memcpy ceiling") for ln in lines)
    res = json.loads(out_json.read_text())
    assert res["np"] == 2 and res["checked"] and res["impls"] == ["hfr-shm", "hfr", "mpi", "gloo"]
    assert all(row["hfr-shm"]["busbw_gbps"] > 0 for row in res["rows"])


@pytest.mark.mpi
def test_bench_every_collective_np2_checked():
    """``--op`` with every composite collective in one run: a checked table per op, MPI and gloo beside HFReduce."""
    ops = ["allgather", "reduce_scatter", "all_to_all", "gather", "scatter"]
    argv = mpirun_argv(2, ["-x", "PYTHONPATH"]) + [
        sys.executable, "-m", "hfreduce.bench", "--op", ",".join(ops), "--min-bytes", "1K", "--max-bytes", "4K",
        "--factor", "4", "--check", "--iters", "2", "--warmup", "1", "--memcpy-mb", "1",
    ]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("HFREDUCE_LOCAL_WORLD_SIZE", None)
    proc = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    titles = [ln for ln in lines if ln.startswith("# HFReduce ") and " benchmark: np=2" in ln]
    assert [t.split()[2] for t in titles] == ops, titles
    assert all("check on" in t for t in titles)
    heads = [ln.split() for ln in lines if ln.split()[:3] == ["size", "count", "type"]]
    assert len(heads) == len(ops) and all("hfr/mpi" in h and "hfr/gloo" in h for h in heads)
    rows = [ln.split() for ln in lines if ln.split() and ln.split()[0].isdigit()]
    assert [int(r[0]) for r in rows] == [1024, 4096] * len(ops)
    assert sum("busbw = algbw*(n-1)/n" in ln for ln in lines) == len(ops)
