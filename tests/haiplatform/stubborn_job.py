"""A rank that survives what it can: it ignores SIGTERM and leaves a double-forked daemon behind.

``python stubborn_job.py OUT_DIR``: writes ``main-SEQ.pid`` and ``daemon-SEQ.pid`` (SEQ is
HAI_RUN_SEQ) and appends a line per tick to ``ticks`` from both, until killed.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def _tick_forever(out: Path, who: str) -> None:
    seq = os.environ.get("HAI_RUN_SEQ", "0")
    while True:
        with open(out / "ticks", "a") as f:
            f.write(f"{who} {seq} {os.getpid()} {time.time():.3f}\n")
        time.sleep(0.1)


def main() -> None:
    out = Path(sys.argv[1])
    seq = os.environ.get("HAI_RUN_SEQ", "0")
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.fork() == 0:  # double fork: the daemon is re-parented and in a session of its own
        os.setsid()
        if os.fork() == 0:
            (out / f"daemon-{seq}.pid").write_text(str(os.getpid()))
            _tick_forever(out, "daemon")
        os._exit(0)
    os.wait()
    (out / f"main-{seq}.pid").write_text(str(os.getpid()))
    print("stubborn rank up", flush=True)
    _tick_forever(out, "main")


if __name__ == "__main__":
    main()
