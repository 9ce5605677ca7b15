"""Node health: the configured validator command, or the built-in checks (disk, memory, GEMM)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def check_health(health_check: str, work_dir: Path) -> tuple[bool, str]:
    """Run the validator: the ``health_check`` shell command, or the built-in checks."""
    if health_check:
        try:
            out = subprocess.run(["/bin/sh", "-c", health_check], capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return False, "health check timed out after 60 s"
        if out.returncode != 0:
            msg = (out.stdout + out.stderr).strip().splitlines()
            return False, f"health check exited {out.returncode}: {msg[-1] if msg else ''}"
        return True, ""
    return builtin_validator(work_dir)


def builtin_validator(work_dir: Path) -> tuple[bool, str]:
    """Small version of the Fire-Flyer validator: work dir writable, memory available, GEMM correct."""
    import numpy as np

    try:
        probe = work_dir / ".health-probe"
        probe.write_bytes(b"x" * 4096)
        probe.unlink()
    except OSError as exc:
        return False, f"work dir {work_dir} not writable: {exc}"
    try:
        avail_kib = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemAvailable")
        )
        if avail_kib < 256 * 1024:
            return False, f"only {avail_kib // 1024} MiB of memory available"
    except (OSError, StopIteration):
        pass
    a = np.arange(64 * 64, dtype=np.float64).reshape(64, 64) % 7
    if not np.array_equal(a @ np.eye(64), a):
        return False, "GEMM result wrong (CPU logic fault)"
    return True, ""
