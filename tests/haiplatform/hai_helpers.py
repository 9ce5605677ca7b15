"""Helpers shared by the HAI-Platform tests (importable: conftest modules are not)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

TRAIN_JOB = Path(__file__).resolve().parent / "train_job.py"


def train_command(steps: int, step_s: float, out: Path) -> str:
    """Shell command running the deterministic training job."""
    return f"{sys.executable} {TRAIN_JOB} {steps} {step_s} {out}"


def log_so_far(client, job_id: int, rank: int = 0) -> bytes:
    """The tail of a rank's log, or nothing while the job has not been placed on nodes yet."""
    from haiplatform import errors

    try:
        return client.tail_log(job_id, rank).data
    except errors.InvalidState:
        return b""


def wait_for(pred, timeout_s: float = 60.0, what: str = "condition"):
    """Poll ``pred`` until truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        val = pred()
        if val:
            return val
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def processes_with_env(name: str, value: str) -> dict[int, dict[str, str]]:
    """Live processes whose environment has ``name=value`` (read from /proc), with that environment."""
    import os

    want = f"{name}={value}".encode()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                items = f.read().split(b"\0")
        except OSError:
            continue
        if want in items:
            env = dict(i.decode(errors="replace").partition("=")[::2] for i in items if b"=" in i)
            found[int(entry)] = env
    return found
