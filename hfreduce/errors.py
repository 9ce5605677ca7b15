"""Every error HFReduce raises; all derive from :class:`HFReduceError`."""

from __future__ import annotations


class HFReduceError(RuntimeError):
    """A collective failed; the message names the rank(s) involved and what differed or was lost."""


class MismatchError(HFReduceError):
    """Ranks called a collective with different sizes, dtypes, ops or roots (no data was moved)."""


class CollectiveTimeoutError(HFReduceError, TimeoutError):
    """A peer did not make progress within the timeout (``hfreduce.init(timeout_s=)``, ``HFREDUCE_TIMEOUT_S``);
    the communicator is now failed. Also a builtin ``TimeoutError``, so ``except TimeoutError`` catches it."""


class PeerLostError(HFReduceError):
    """A peer process died or its connection broke; the communicator is now failed."""


class UsageError(HFReduceError, ValueError):
    """Bad arguments detected locally: unsupported dtype, non-contiguous buffer, not initialised."""
