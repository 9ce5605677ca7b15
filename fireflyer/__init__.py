"""Fire-Flyer: the glue between HFReduce, fs3 and HAI-Platform (CLI, training, local cluster)."""

__version__ = "0.1.0"
