"""Commands as given: ``haictl submit -- CMD ARGS`` runs the argv exactly (no shell), ``--shell`` and a
job file's ``command:`` string go through /bin/sh. Start failures say why: a rank whose workdir is
missing, whose executable is missing, or whose exec fails reports that cause in ``haictl show`` and
``haictl jobs``, not only "exited with code 127"."""

from __future__ import annotations

import json
import sys

import pytest

from haiplatform import errors

# Spaces, both quotes, $ expansions, ; and && and a backslash, a glob, non-ASCII, an empty argument.
HOSTILE_ARGS = ["a  b", "it's", 'say "hi"', "$HOME", "${PATH}", "$(id)", "x; echo injected", "a && b", "back\\slash",
                "*", "é 中文 🚀", "", "--not-an-option"]  # fmt: skip
PRINT_ARGV = "import json, sys; print('ARGV=' + json.dumps(sys.argv[1:]))"


def _argv_seen(c, job: int) -> list[str]:
    text = c.admin.tail_log(job, 0, 0, 1 << 20).data.decode()
    return json.loads(next(line for line in text.splitlines() if line.startswith("ARGV="))[5:])


def test_argv_after_double_dash_runs_exactly_as_given(cluster_factory, tmp_path):
    c = cluster_factory(["n1"])
    rc, out, err = c.haictl(
        "submit", "--workdir", str(tmp_path), "--json", "--", sys.executable, "-c", PRINT_ARGV, *HOSTILE_ARGS
    )
    assert rc == 0, err
    job = json.loads(out)["job_id"]
    assert c.admin.wait(job, timeout_s=30).state == "completed"
    assert _argv_seen(c, job) == HOSTILE_ARGS
    rc, out, _ = c.haictl("show", str(job), "--json")
    shown = json.loads(out)
    assert shown["argv"] == [sys.executable, "-c", PRINT_ARGV, *HOSTILE_ARGS]
    assert shown["command"].startswith(sys.executable) and "'x; echo injected'" in shown["command"]


def test_shell_string_and_job_files(cluster_factory, tmp_path):
    c = cluster_factory(["n1"])
    rc, out, err = c.haictl(
        "submit", "--workdir", str(tmp_path), "--json", "--shell", "echo $((40+2)); echo two"
    )
    assert rc == 0, err
    job = json.loads(out)["job_id"]
    assert c.admin.wait(job, timeout_s=30).state == "completed"
    assert "42\ntwo" in c.admin.tail_log(job).data.decode()
    # A job file's command list is an argv; its command string is a shell command.
    listed = tmp_path / "argv.yaml"
    listed.write_text(json.dumps({"command": [sys.executable, "-c", PRINT_ARGV, "$HOME", "a;b"]}))
    rc, out, err = c.haictl("submit", "-f", str(listed), "--workdir", str(tmp_path), "--json")
    assert rc == 0, err
    job = json.loads(out)["job_id"]
    assert c.admin.wait(job, timeout_s=30).state == "completed"
    assert _argv_seen(c, job) == ["$HOME", "a;b"]
    rc, _, err = c.haictl("submit", "--shell", "true", "--", "true")
    assert rc != 0 and "not both" in err
    with pytest.raises(errors.InvalidSpec, match=r"argv\[1\]: contains a NUL byte"):
        c.admin.submit({"command": ["echo", "bad\0arg"]})


def _failing_specs(tmp_path):
    noexec = tmp_path / "noexec.sh"
    noexec.write_text("#!/bin/sh\necho never\n")
    noexec.chmod(0o644)
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\x7fELF not really an executable")
    garbage.chmod(0o755)
    gone = str(tmp_path / "gone")
    return {
        "argv-workdir": ({"command": ["true"], "workdir": gone}, "cannot start: workdir does not exist: "),
        "argv-executable": (
            {"command": ["no-such-xyz", "-x"]},
            "cannot start: executable not found: no-such-xyz",
        ),
        "argv-exec": ({"command": [str(garbage)]}, "cannot start: exec failed (Exec format error)"),
        "argv-noexec": ({"command": [str(noexec)]}, "cannot start: permission denied executing"),
        "workdir": ({"command": "true", "workdir": gone}, "cannot start: workdir does not exist: "),
        "executable": ({"command": "no-such-xyz --x"}, "cannot start: executable not found: no-such-xyz"),
        "exec": ({"command": str(noexec)}, "cannot start: permission denied executing"),
    }


@pytest.mark.parametrize(
    "case", ["argv-workdir", "argv-executable", "argv-exec", "argv-noexec", "workdir", "executable", "exec"]
)
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
