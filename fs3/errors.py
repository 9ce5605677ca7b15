"""Exceptions of the fs3 package (placeholder until the fs3 services branch is merged)."""

from __future__ import annotations


class PackedFormatError(ValueError):
    """A packed dataset or checkpoint file is malformed, truncated or used inconsistently."""


class ChecksumMismatchError(PackedFormatError):
    """Data read back does not match the CRC32C recorded when it was written."""
