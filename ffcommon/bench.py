"""The bench kit every benchmark uses: median timing, a thread runner, sizes, one table renderer, JSON.

Each component's benchmark (``python -m hfreduce.bench``, ``haictl bench fs``, ``haictl bench sched``,
``haictl bench train``) measures itself against a peer in the same run and prints an nccl-tests-like
table; the arithmetic and the layout live here so that the tables agree on how they are made.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

MiB = 1 << 20


# ---- timing ------------------------------------------------------------------------------------
def median_s(fn: Callable[[], object], repeats: int, setup: Callable[[], object] | None = None) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` runs; ``setup()`` runs untimed before each."""
    times = []
    for _ in range(max(1, repeats)):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_threads(threads: int, fn: Callable[[int], object]) -> None:
    """Run ``fn(k)`` for k in 0..threads-1, each on its own thread; re-raise the first error."""
    if threads == 1:
        fn(0)
        return
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            fn(k)
        except BaseException as exc:  # re-raised below in the caller's thread
            errors.append(exc)

    ts = [threading.Thread(target=work, args=(k,), name=f"bench-{k}") for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def gbps(nbytes: int, seconds: float) -> float:
    """Throughput in GB/s (10^9 bytes per second)."""
    return nbytes / max(seconds, 1e-12) / 1e9


def ratio(a: float, b: float) -> float:
    """``a / b``, or NaN when ``b`` is zero."""
    return a / b if b else float("nan")


# ---- arguments ---------------------------------------------------------------------------------
def parse_size(s: str, error: type[Exception] = ValueError) -> int:
    """``256M``, ``1G``, ``4096``, ``8MiB`` -> bytes; ``error`` (e.g. click.BadParameter) otherwise."""
    t = s.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    try:
        n = int(float(t[:-1] if t[-1:] in "KMG" else t) * mult)
    except ValueError:
        raise error(f"not a size: {s!r}") from None
    if n <= 0:
        raise error(f"size must be positive: {s!r}")
    return n


def int_list(s: str, error: type[Exception] = ValueError) -> list[int]:
    """``"1,4,8"`` -> ``[1, 4, 8]``; ``error`` naming the text otherwise."""
    try:
        return [int(x) for x in s.split(",") if x.strip()]
    except ValueError:
        raise error(f"not a comma-separated list of integers: {s!r}") from None


# ---- the one table renderer --------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    """One column: its header, minimum width, alignment (``>``, ``<``, ``^``), how a value becomes
    text (a format spec such as ``.1f``, or a function) and, if not the table's, the text before it."""

    header: str
    width: int = 0
    align: str = ">"
    fmt: str | Callable[[Any], str] = ""
    gap: str | None = None

    def text(self, value: Any) -> str:
        """``value`` as this column's cell text (unpadded)."""
        if callable(self.fmt):
            return self.fmt(value)
        return format(value, self.fmt) if self.fmt else str(value)


def render_table(
    columns: Sequence[Column],
    rows: Sequence[Sequence[Any]],
    gap: str = "",
    header_prefix: str = "",
    row_prefix: str = "",
    header: bool = True,
    rstrip: bool = False,
) -> list[str]:
    """The lines of a table: each column as wide as its widest cell, header or ``width``; cells joined
    by ``gap`` (or the column's own), after ``header_prefix`` / ``row_prefix``."""
    cells = [[c.text(v) for c, v in zip(columns, r, strict=True)] for r in rows]
    widths = [
        max([c.width, len(c.header) if header else 0] + [len(r[i]) for r in cells])
        for i, c in enumerate(columns)
    ]

    def line(prefix: str, texts: Sequence[str]) -> str:
        parts = [
            (c.gap if c.gap is not None else "" if i == 0 else gap) + f"{t:{c.align}{w}}"
            for i, (c, t, w) in enumerate(zip(columns, texts, widths, strict=True))
        ]
        s = prefix + "".join(parts)
        return s.rstrip() if rstrip else s

    out = [line(header_prefix, [c.header for c in columns])] if header else []
    return out + [line(row_prefix, r) for r in cells]


def _cell(v: Any) -> str:
    """A number with about four significant digits, NaN as ``-``; anything else as str."""
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"
    return str(v)


@dataclass
class Table:
    """An nccl-tests-like table: ``#`` title and notes, then right-aligned columns (units in the headers)."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *values: Any) -> None:
        """Append one row (one value per column)."""
        if len(values) != len(self.columns):
            raise ValueError(f"{self.title}: row has {len(values)} values for {len(self.columns)} columns")
        self.rows.append(list(values))

    def render(self) -> str:
        """The table as text."""
        cols = [Column(c, fmt=_cell) for c in self.columns]
        lines = [f"# {self.title}", *(f"#   {n}" for n in self.notes)]
        lines += render_table(cols, self.rows, gap="  ", header_prefix="#", row_prefix=" ")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        """Rows as dicts keyed by column header (for ``--json``)."""
        return {
            "title": self.title,
            "notes": self.notes,
            "rows": [dict(zip(self.columns, r, strict=True)) for r in self.rows],
        }


# ---- output ------------------------------------------------------------------------------------
def to_json(obj: Any) -> str:
    """``obj`` as the indented JSON every ``--json`` prints (non-JSON values as their str)."""
    return json.dumps(obj, indent=2, default=str)


def emit(tables: Sequence[Table], as_json: bool, out: TextIO | None = None) -> None:
    """Print the tables (text, or one JSON document) to ``out`` (default: click's stdout)."""
    import click

    text = to_json([t.as_dict() for t in tables]) if as_json else "\n\n".join(t.render() for t in tables)
    click.echo(text, file=out)
