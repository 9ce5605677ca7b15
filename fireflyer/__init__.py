"""Fire-Flyer: the glue between HFReduce, fs3 and HAI-Platform (CLI, training, local cluster)."""

from ffcommon import __version__

__all__ = ["__version__"]
