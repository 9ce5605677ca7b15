"""The package builds, its extension imports, and the project's own checks hold."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_extension_reports_cpu_features_matching_proc_cpuinfo():
    import hfreduce

    feats = hfreduce.cpu_features()
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    assert feats["avx2"] == ("avx2" in flags)
    assert feats["avx512f"] == ("avx512f" in flags)
    assert feats["avx512bf16"] == ("avx512_bf16" in flags)


def test_haictl_info_runs():
    out = subprocess.run(
        [sys.executable, "-m", "fireflyer.cli.main", "info", "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert '"avx2"' in out.stdout


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
@pytest.mark.parametrize("argv", [["check", "."], ["format", "--check", "."]], ids=["check", "format"])
def test_ruff_clean(argv):
    """``ruff check .`` (RUF100 too: no stale ``# noqa``) and ``ruff format --check .`` pass on the tree."""
    out = subprocess.run(["ruff", *argv], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_readme_starts_with_two_commands_and_ci_runs_the_second():
    text = (ROOT / "README.md").read_text()
    block = text.split("```")[1]
    cmds = [ln for ln in block.splitlines()[1:] if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(cmds) == 2, cmds
    ci = subprocess.run(
        [
            "bash",
            "-c",
            "awk '/^```/{n++; next} n==1 && /^[^#[:space:]]/{c++; if (c==2) {print; exit}}' README.md",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert ci.stdout.strip() == cmds[1]


def test_generated_grpc_stubs_are_fresh():
    out = subprocess.run(
        [sys.executable, "-m", "fireflyer.protogen", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr
