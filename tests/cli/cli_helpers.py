"""Helpers of the haictl tests: run the real CLI in a fresh interpreter, wait for a condition."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class Haictl:
    """Runs ``haictl`` in a fresh interpreter with a private HOME and client config."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "HOME": str(root / "home"),
                    "HAI_CLIENT_CONFIG": str(root / "client.toml")}  # fmt: skip
        for var in ("FIREFLYER_DATA_DIR", "FIREFLYER_CONFIG", "HAI_SCHEDULER", "HAI_TOKEN", "FS3_MGMTD"):
            self.env.pop(var, None)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "fireflyer.cli.main", *args]

    def __call__(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, env=self.env, timeout=timeout_s
        )

    def ok(self, *args: str) -> str:
        res = self(*args)
        assert res.returncode == 0, (args, res.stdout, res.stderr)
        return res.stdout


def wait_for(pred: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """``pred()``'s first truthy value, polled until ``timeout_s``; else AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
