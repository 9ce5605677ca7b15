"""ffcommon: the plumbing under every Fire-Flyer part (like 3FS's ``src/common``).

Process launching and ports (:mod:`ffcommon.launcher`, :mod:`ffcommon.ports`), gRPC/Prometheus
metrics (:mod:`ffcommon.metrics`), config loading (:mod:`ffcommon.config`) and the release version.
It imports none of the parts (``hfreduce``, ``fs3``, ``haiplatform``) nor the ``fireflyer`` glue, and
this module stays import-free so that reading ``__version__`` costs nothing.
"""

__version__ = "0.1.0"
