"""fio with --verify=crc32c over the mount: every block written is read back and checked."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

pytestmark = [
    pytest.mark.fuse,
    pytest.mark.skipif(shutil.which("fio") is None, reason="fio not installed (apt-get install fio)"),
]


@pytest.mark.parametrize(
    "rw, bs",
    [("write", "128k"), ("randwrite", "4k"), ("randwrite", "64k")],
    ids=["seq-128k", "rand-4k", "rand-64k"],
)
def test_fio_crc32c_verify(mdir, rw, bs, tmp_path):
    argv = [
        "fio",
        f"--name={rw}-{bs}",
        f"--directory={mdir}",
        f"--rw={rw}",
        f"--bs={bs}",
        "--size=8m",
        "--numjobs=2",
        "--ioengine=psync",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_dump=0",
        "--randrepeat=0",
        "--output-format=json",
    ]
    # fio saves its *-verify.state files in its working directory: the test's own, not the repo root
    res = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    out = json.loads(res.stdout[res.stdout.index("{") :])
    assert len(out["jobs"]) == 2
    for job in out["jobs"]:
        assert job["error"] == 0
        assert job["write"]["io_bytes"] == 8 << 20
        # the verify phase read back everything that was written
        assert job["read"]["io_bytes"] == 8 << 20
    assert list(tmp_path.glob("*-verify.state")), "fio saved no verify state where it was started"
