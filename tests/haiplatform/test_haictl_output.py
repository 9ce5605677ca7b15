"""``haictl jobs`` and ``haictl show`` never pass terminal control, bidi or invisible characters through raw.

A job's name and command come from its submitter; printed raw, an ESC sequence in them could
recolour or clear another user's terminal, and a bidi override could make one job read as another.
"""

from __future__ import annotations

import json

import pytest

from fireflyer.cli._text import terminal_safe

NAME = "\x1b[2J\x1b[31mred\u202eevil\x9b"
ARG = "\x1b]0;pwned\x07"
RAW = ("\x1b", "\u202e", "\x9b", "\x07")


@pytest.mark.parametrize(
    ("text", "shown"),
    [("plain é 中 name", "plain é 中 name"), ("a\x1b[0mb", "a\\u001b[0mb"), ("x\ny\tz", "x\\u000ay\\u0009z"),
     ("\u202egpj.exe", "\\u202egpj.exe"), ("\u2066iso\u2069", "\\u2066iso\\u2069"), ("zero\u200bwidth", "zero\\u200bwidth"),
     ("\x7f\x85", "\\u007f\\u0085"), ("tag\U000e0041", "tag\\u{e0041}")],
)  # fmt: skip
def test_terminal_safe_escapes_controls_bidi_and_invisibles(text: str, shown: str) -> None:
    assert terminal_safe(text) == shown


def test_jobs_and_show_escape_a_hostile_name_and_command(cluster_factory) -> None:
    c = cluster_factory(["n1"])
    # A name with control or bidi characters is refused at submit (it could spoof another job's)...
    rc, out, err = c.haictl("submit", "--json", "--name", NAME, "--", "echo", ARG)
    assert rc != 0 and "name: must not contain control or bidirectional-override characters" in err
    # ...a command may hold any text, and is escaped when shown.
    rc, out, err = c.haictl("submit", "--json", "--name", "hostile-arg", "--", "echo", ARG)
    assert rc == 0, err
    job_id = json.loads(out)["job_id"]

    rc, listing, err = c.haictl("jobs")
    assert rc == 0, err
    assert not [ch for ch in RAW if ch in listing], repr(listing)
    assert "hostile-arg" in listing, listing

    rc, shown, err = c.haictl("show", str(job_id))
    assert rc == 0, err
    assert not [ch for ch in RAW if ch in shown], repr(shown)
    assert "\\u001b]0;pwned\\u0007" in shown, shown

    # --json keeps the exact text (JSON escapes control characters itself) for scripts
    rc, raw_json, err = c.haictl("show", "--json", str(job_id))
    assert rc == 0 and ARG in json.loads(raw_json)["command"]
    assert "\x1b" not in raw_json
