"""CRC32C, the checksum of fs3 chunks: the C++ core's SSE4.2 version over any buffer, without copying.

Falls back to google-crc32c (which takes only ``bytes``) when the extension is not built.
"""

from __future__ import annotations

try:
    from fs3._native import crc32c as _native_crc32c
except ImportError:  # pragma: no cover - a source tree without the built extension
    _native_crc32c = None

import google_crc32c


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC32C of ``data`` continuing from ``value`` (0 to start); ``crc32c(b"123456789") == 0xE3069283``."""
    if _native_crc32c is not None:
        return _native_crc32c(data, value)
    raw = data if isinstance(data, bytes) else bytes(data)
    return google_crc32c.extend(value, raw) if value else google_crc32c.value(raw)
