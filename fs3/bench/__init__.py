"""fs3's benchmarks, each against peers measured in the same run (the kit is :mod:`ffcommon.bench`).

- :mod:`fs3.bench.native`: ``haictl bench fs`` / ``python -m fs3.bench``, the native client on local
  clusters vs the local disk and raw loopback TCP (sequential I/O, metadata rates);
- :mod:`fs3.bench.mount`: ``haictl fs bench``, a FUSE mount vs the native client vs the local disk;
- :mod:`fs3.bench.measure`: the timed operations both use (fs3, POSIX and socket peers).
"""
