"""The bench kit: one table renderer for every benchmark's layout, sizes, thread runner, median."""

from __future__ import annotations

import pytest

from ffcommon import bench
from ffcommon.bench import Column, Table, render_table


def test_fixed_width_columns_match_the_f_string_layout_they_replace():
    cols = [
        Column("mode", 22, "<"),
        Column("median ms", 11, fmt=".1f"),
        Column("x", 10, fmt=lambda v: f"{v:.2f}x"),
    ]
    lines = render_table(cols, [["haiscale", 150.0, 1.3333]])
    assert lines == [
        f"{'mode':<22}{'median ms':>11}{'x':>10}",
        f"{'haiscale':<22}{150.0:>11.1f}{1.3333:>9.2f}x",
    ]


def test_columns_widen_to_their_widest_cell_and_gaps_apply_between_them():
    cols = [Column("ID", align="<"), Column("NAME", align="<"), Column("REASON", align="<")]
    lines = render_table(cols, [["1", "train", ""], ["12", "x", "waiting"]], gap="  ", rstrip=True)
    assert lines == ["ID  NAME   REASON", "1   train", "12  x      waiting"]


def test_a_column_gap_of_its_own_and_a_centred_group_header():
    cols = [Column("", 4), Column("-- a --", 12, "^", gap="  ")]
    assert render_table(cols, []) == ["    " + "  " + f"{'-- a --':^12}"]


def test_nccl_table_renders_title_notes_header_and_rows():
    t = Table("demo", ["op", "GB/s"], notes=["a note"])
    t.add("read", float("nan"))
    t.add("write", 1234.5)
    assert t.render().splitlines() == ["# demo", "#   a note", "#   op  GB/s", "  read     -", " write  1234"]
    with pytest.raises(ValueError, match="demo: row has 1 values for 2 columns"):
        t.add("x")


@pytest.mark.parametrize(
    "text, n", [("4096", 4096), ("8K", 8192), ("256M", 256 << 20), ("1G", 1 << 30), ("8MiB", 8 << 20)]
)
def test_parse_size_reads_binary_suffixes(text, n):
    assert bench.parse_size(text) == n


@pytest.mark.parametrize("text, why", [("lots", "not a size: 'lots'"), ("0", "size must be positive: '0'")])
def test_parse_size_refuses_with_the_callers_error(text, why):
    class BadParameter(Exception):
        pass

    with pytest.raises(BadParameter, match=why):
        bench.parse_size(text, BadParameter)


def test_run_threads_runs_every_index_and_reraises_a_failure():
    seen: list[int] = []
    bench.run_threads(4, seen.append)
    assert sorted(seen) == [0, 1, 2, 3]

    def fail(k: int) -> None:
        if k == 2:
            raise RuntimeError("thread 2 failed")

    with pytest.raises(RuntimeError, match="thread 2 failed"):
        bench.run_threads(3, fail)


def test_median_runs_setup_untimed_before_each_repeat():
    calls: list[str] = []
    assert bench.median_s(lambda: calls.append("run"), 3, setup=lambda: calls.append("setup")) >= 0
    assert calls == ["setup", "run"] * 3
    assert bench.int_list("1, 4,8") == [1, 4, 8]
    with pytest.raises(ValueError, match="not a comma-separated list of integers"):
        bench.int_list("1,x")
