"""Start failures say why: a rank whose workdir is missing, whose executable is missing, or whose exec
fails reports that cause in ``haictl show`` and ``haictl jobs``, not only "exited with code 127"."""

from __future__ import annotations

import json

import pytest


def _failing_specs(tmp_path):
    noexec = tmp_path / "noexec.sh"
    noexec.write_text("#!/bin/sh\necho never\n")
    noexec.chmod(0o644)
    return {
        "workdir": (
            {"command": "true", "workdir": str(tmp_path / "gone")},
            "cannot start: workdir does not exist: ",
        ),
        "executable": (
            {"command": "no-such-program-xyz --x"},
            "cannot start: executable not found: no-such-program-xyz",
        ),
        "exec": ({"command": str(noexec)}, "cannot start: permission denied executing"),
    }


@pytest.mark.parametrize("case", ["workdir", "executable", "exec"])
def test_start_failure_cause_in_show_and_jobs(cluster_factory, tmp_path, case):
    c = cluster_factory(["n1"])
    spec, cause = _failing_specs(tmp_path)[case]
    job = c.admin.submit({"workdir": str(tmp_path), **spec})
    info = c.admin.wait(job, timeout_s=30)
    assert info.state == "failed" and info.exit_code in (126, 127), info
    assert info.reason.startswith(cause) and "rank 0 on n1" in info.reason, info.reason
    rc, out, err = c.haictl("show", str(job), "--json")
    assert rc == 0 and json.loads(out)["reason"].startswith(cause), err
    rc, out, err = c.haictl("jobs")
    assert rc == 0 and cause[:40] in out, out
