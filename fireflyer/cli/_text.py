"""Text from the cluster made safe for a terminal: what ``haictl`` prints of names, commands and reasons."""

from __future__ import annotations

import re

# C0/C1 controls (ESC starts terminal sequences), DEL, bidi embeddings/overrides/isolates and marks,
# zero-width and other invisible characters, line/paragraph separators, variation selectors and tag
# characters: the set the status page's safe() escapes, so both show the same text.
_UNSAFE = re.compile(
    r"[\u0000-\u001f\u007f-\u009f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    r"\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb\U000e0000-\U000e0fff]"
)


def _escape(m: re.Match[str]) -> str:
    cp = ord(m.group())
    return f"\\u{{{cp:x}}}" if cp > 0xFFFF else f"\\u{cp:04x}"


def terminal_safe(text: object) -> str:
    """``str(text)`` with every control, bidi and invisible character shown as a ``\\uXXXX`` escape.

    A job name cannot then move the cursor, recolour the screen or reorder what follows it.
    """
    return _UNSAFE.sub(_escape, str(text))
