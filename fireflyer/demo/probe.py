"""The demo's urgent job: an HFReduce bandwidth probe across the job's nodes (nccl-tests-style table)."""

from __future__ import annotations

import statistics
import time

import numpy as np

import hfreduce


def main() -> int:
    """Allreduce float32 buffers of growing size in shared memory; rank 0 prints median bandwidths."""
    hfreduce.init()
    n = hfreduce.get_world_size()
    if hfreduce.get_rank() == 0:
        print(f"HFReduce probe: {n} ranks on {hfreduce.get_num_nodes()} nodes", flush=True)
        print(f"{'size':>10} {'time_ms':>9} {'algbw_GBps':>11} {'busbw_GBps':>11}", flush=True)
    for nbytes in (1 << 20, 4 << 20, 16 << 20, 64 << 20):
        buf = hfreduce.zeros(nbytes // 4, np.float32)
        buf[:] = hfreduce.get_rank() + 1
        hfreduce.allreduce(buf)
        want = n * (n + 1) / 2
        if not np.all(buf == want):
            raise SystemExit(f"wrong allreduce result: {buf[:4]} != {want}")
        times = []
        for _ in range(5):
            hfreduce.barrier()
            t0 = time.perf_counter()
            hfreduce.allreduce(buf)
            times.append(time.perf_counter() - t0)
        t = statistics.median(times)
        if hfreduce.get_rank() == 0:
            algbw = nbytes / t / 1e9
            print(f"{nbytes:>10} {t * 1e3:>9.2f} {algbw:>11.2f} {algbw * 2 * (n - 1) / n:>11.2f}", flush=True)
    hfreduce.finalize()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
