"""Helpers shared by the HAI-Platform tests (importable: conftest modules are not)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

TRAIN_JOB = Path(__file__).resolve().parent / "train_job.py"


def train_command(steps: int, step_s: float, out: Path) -> str:
    """Shell command running the deterministic training job."""
    return f"{sys.executable} {TRAIN_JOB} {steps} {step_s} {out}"


def wait_for(pred, timeout_s: float = 60.0, what: str = "condition"):  # noqa: ANN001, ANN201
    """Poll ``pred`` until truthy; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        val = pred()
        if val:
            return val
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)
