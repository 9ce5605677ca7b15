"""The agent's node-wide job env: FS3_MGMTD for every rank, FS3_MOUNT only while the mount exists,
and a job's own env winning over both."""

from __future__ import annotations

import json

import pytest


def _env_of(c, node: str, *submit_args: str) -> dict[str, str]:
    rc, out, err = c.haictl("submit", "--json", *submit_args, "--", "env")
    assert rc == 0, err
    job_id = json.loads(out)["job_id"]
    info = c.admin.wait(job_id)
    assert info.state == "completed" and list(info.assigned_nodes) == [node], info
    text = c.admin.tail_log(job_id, 0).data.decode()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("="))


@pytest.mark.parametrize(("mount", "expect"), [("/", "/"), ("/nonexistent-fs3-mount", None)])
def test_agent_sets_fs3_mgmtd_and_only_a_mounted_fs3_mount(
    cluster_factory, mount: str, expect: str | None
) -> None:
    c = cluster_factory([])
    c.start_agent("n1", ["--job-env", "FS3_MGMTD=10.0.0.1:9000", "--fs3-mount", mount])
    c.wait_nodes_up(["n1"])
    env = _env_of(c, "n1")
    assert env["FS3_MGMTD"] == "10.0.0.1:9000" and env.get("FS3_MOUNT") == expect
    env = _env_of(c, "n1", "-e", "FS3_MGMTD=10.9.9.9:1")  # the job's own value wins
    assert env["FS3_MGMTD"] == "10.9.9.9:1"
