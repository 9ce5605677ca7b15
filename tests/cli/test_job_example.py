"""docs/JOBS.md's example job, run as the page says: data packed into fs3, read through the node's
fs3 mount (FS3_MOUNT), 2 ranks on HFReduce, suspended mid-run, resumed from its fs3 checkpoint."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import REPO, Haictl, wait_for

from fireflyer import cluster
from fireflyer.config import load_config


@pytest.mark.slow
def test_example_job_reads_fs3_survives_suspend_and_finishes(tmp_path: Path) -> None:
    h = Haictl(tmp_path)
    mnt, data = tmp_path / "mnt", tmp_path / "c"
    cfg = load_config(None)
    for agent in cfg.agents:
        agent.fs3_mount = str(mnt)  # both "nodes" are this machine: one mount serves both
    (tmp_path / "cluster.toml").write_text(cluster.dump_config(cfg))
    h.ok("up", "--config", str(tmp_path / "cluster.toml"), "--data-dir", str(data))
    try:
        samples = tmp_path / "samples"
        samples.mkdir()
        rng = np.random.default_rng(0)
        w = rng.normal(size=16).astype(np.float32)
        for i in range(64):
            x = rng.normal(size=16).astype(np.float32)
            np.append(x, np.float32(x @ w)).astype(np.float32).tofile(samples / f"{i:03d}.bin")
        h.ok("fs", "mkdir", "-p", "/jobs")
        h.ok("fs", "pack", str(samples), "fs3:/jobs/data.pack")
        h.ok("fs", "mount", str(mnt))
        try:
            job = json.loads(h.ok(
                "submit", "--json", "--name", "example", "--ranks-per-node", "2", "--workdir", str(REPO), "--",
                sys.executable, "docs/examples/train_job.py", "--data", "/jobs/data.pack", "--steps", "120",
                "--ckpt-every", "40",
            ))["job_id"]  # fmt: skip
            log = lambda: h.ok("logs", str(job))  # noqa: E731
            wait_for(lambda: re.search(r"^step [2-9]\d ", log(), re.M), 120, "the job to train 20 steps")
            h.ok("suspend", str(job))
            wait_for(
                lambda: json.loads(h.ok("show", "--json", str(job)))["state"] == "suspended", 60, "suspended"
            )
            at = int(re.search(r"rank 0: suspending at step (\d+)", log()).group(1))
            h.ok("resume", str(job))
            wait_for(lambda: json.loads(h.ok("show", "--json", str(job)))["state"] in ("completed", "failed"), 120,
                  "the resumed job to end")  # fmt: skip
            info, text = json.loads(h.ok("show", "--json", str(job))), log()
            assert info["state"] == "completed" and info["run_seq"] == 2, (info, text)
            assert f"rank 0: resumed at step {at}" in text, text
            assert f"through the mount {mnt}" in text and "done: 120 steps on 2 ranks" in text, text
        finally:
            h("fs", "umount", str(mnt))
    finally:
        h("down", "--data-dir", str(data))
