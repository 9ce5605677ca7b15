"""HFReduce: allreduce whose reduction runs on the CPU in shared host memory.

See docs/ARCHITECTURE.md for the data path of one gradient.
"""

from hfreduce._C import cpu_features

__all__ = ["cpu_features"]
