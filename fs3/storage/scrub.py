"""The background scrubber: re-reads every committed chunk of this node's targets and checks its CRC32C.

Chunks are verified one at a time, paced to ``rate_bytes_s`` (a token bucket over the bytes read),
so a scrub competes with client I/O only that much. A chunk that fails is handed to the repairer
(``fs3.storage.repair``), which copies a good replica over it and verifies the result; a chunk it
could not repair is tried again on the next pass. Passes run back to back, ``pause_s`` apart.
"""

from __future__ import annotations

import logging
import threading
import time

from prometheus_client import Counter

from fs3 import errors
from fs3.storage.repair import ChunkRepairer
from fs3.storage.targets import Targets

SCRUBBED = Counter("fs3_scrub_verified_bytes", "Bytes of committed chunks the scrubber verified", ["target"])
PASSES = Counter("fs3_scrub_passes", "Complete scrub passes over every target of this node")
DEFAULT_RATE_BYTES_S = 32 << 20
DEFAULT_PAUSE_S = 30.0


class Scrubber:
    """Verifies this node's chunks at ``rate_bytes_s`` (0: never) and repairs those that fail."""

    def __init__(
        self,
        targets: Targets,
        repairer: ChunkRepairer,
        rate_bytes_s: int = DEFAULT_RATE_BYTES_S,
        pause_s: float = DEFAULT_PAUSE_S,
    ) -> None:
        if rate_bytes_s < 0:
            raise ValueError(f"scrub_rate_bytes_s: {rate_bytes_s} must be >= 0 (0: off)")
        if pause_s < 0:
            raise ValueError(f"scrub_pause_s: {pause_s} must be >= 0")
        self.targets = targets
        self.repairer = repairer
        self.rate_bytes_s = rate_bytes_s
        self.pause_s = pause_s
        self.passes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start scrubbing on a daemon thread (unless the rate is 0)."""
        if self.rate_bytes_s > 0:
            self._thread = threading.Thread(target=self._loop, name="scrub", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop after the chunk being verified."""
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                n, nbytes = self.scrub_pass()
            except Exception:  # keep scrubbing; the next pass retries
                logging.exception("scrub pass failed")
                n, nbytes = 0, 0
            if self._stop.is_set():
                return
            self.passes += 1
            PASSES.inc()
            dt = time.monotonic() - t0
            logging.info(
                "scrub pass %d: %d chunks, %d bytes verified in %.1f s (%.1f MiB/s)",
                self.passes, n, nbytes, dt, nbytes / max(dt, 1e-9) / (1 << 20),
            )  # fmt: skip
            self._stop.wait(self.pause_s)

    def scrub_pass(self) -> tuple[int, int]:
        """Verify every committed chunk of every target once; (chunks, bytes) verified."""
        n = nbytes = 0
        budget_t = time.monotonic()  # when the bytes read so far may have been read at the rate
        for tid, store in sorted(self.targets.stores.items()):
            health = self.repairer.target_health(tid)
            for m in store.all_meta():
                if self._stop.is_set():
                    return n, nbytes
                if m.committed_version == 0:
                    continue
                now = time.monotonic()
                if budget_t > now:
                    if self._stop.wait(budget_t - now):
                        return n, nbytes
                budget_t = max(budget_t, time.monotonic()) + m.length / self.rate_bytes_s
                cid = (m.inode_id, m.index)
                try:
                    store.read(cid)
                except errors.ChecksumMismatchError:
                    self.repairer.repair(tid, cid, "scrub")
                    continue
                except errors.FS3Error:
                    continue  # removed meanwhile
                self.repairer.cleared(tid, cid)
                n += 1
                nbytes += m.length
                health.scrubbed_bytes += m.length
                SCRUBBED.labels(str(tid)).inc(m.length)
        return n, nbytes
