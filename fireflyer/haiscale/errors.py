"""Errors raised by HaiScale: one module, so callers catch ``HaiScaleError`` and nothing else."""

from __future__ import annotations


class HaiScaleError(RuntimeError):
    """Base class of every HaiScale failure (bad configuration, a failed or timed-out gradient allreduce)."""


class UnusedParametersError(HaiScaleError):
    """Parameters got no gradient in a backward pass while ``find_unused_parameters`` is off."""


class CommunicationError(HaiScaleError):
    """A gradient allreduce failed or timed out (a peer rank died or raised); names the bucket and rank."""


class BackwardIncompleteError(HaiScaleError):
    """The previous backward pass stopped half-way on this rank, so the ranks are out of step."""
