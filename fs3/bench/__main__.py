"""``python -m fs3.bench``: the native-client benchmark (see :mod:`fs3.bench.native`)."""

from fs3.bench.native import fs_bench

if __name__ == "__main__":
    fs_bench()
