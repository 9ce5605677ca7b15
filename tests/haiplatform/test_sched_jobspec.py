"""The one job-spec validator's parsers and rules (pure functions shared by client and scheduler)."""

from __future__ import annotations

import pytest

from haiplatform import errors
from haiplatform.scheduler import jobspec
from haiplatform.scheduler.dependencies import NEVER, OK, WAIT, dependency_state


@pytest.mark.parametrize(
    ("text", "indices", "limit"),
    [
        ("0-3", [0, 1, 2, 3], 0),
        ("0-99%8", list(range(100)), 8),
        ("1,3,5-7", [1, 3, 5, 6, 7], 0),
        ("4", [4], 0),
    ],
)
def test_parse_array(text, indices, limit):
    assert jobspec.parse_array(text) == (indices, limit)


@pytest.mark.parametrize(
    ("text", "message"),
    [("5-2", "range 5-2 is empty"), ("a-b", "must be N or N-M"), ("0-9%0", "limit after %"),
     ("0-10000", "more than the limit of 10000"), ("-1", "must be N or N-M")],
)  # fmt: skip
def test_parse_array_rejects(text, message):
    with pytest.raises(errors.InvalidSpec, match=rf"^array: .*{message}"):
        jobspec.parse_array(text)


def test_parse_dependencies_and_begin():
    assert jobspec.parse_dependencies("afterok:12:13,afterany:14") == [
        ("afterok", 12),
        ("afterok", 13),
        ("afterany", 14),
    ]
    for bad in ("after", "afterok:x", "before:1"):
        with pytest.raises(errors.InvalidSpec, match="^depends_on: "):
            jobspec.parse_dependencies(bad)
    assert jobspec.parse_begin("now+90", now=1000.0) == 1090.0
    assert jobspec.parse_begin("+2h", now=1000.0) == 1000.0 + 7200
    assert jobspec.parse_begin("1234.5") == 1234.5
    assert jobspec.parse_begin("2026-12-03T18:00") > 0
    with pytest.raises(errors.InvalidSpec, match="^begin_at: 'tomorrowish'"):
        jobspec.parse_begin("tomorrowish")


@pytest.mark.parametrize(
    ("kind", "status", "result"),
    [
        ("after", ("queued", False), WAIT), ("after", ("running", True), OK), ("after", ("cancelled", False), OK),
        ("afterany", ("running", True), WAIT), ("afterany", ("failed", True), OK),
        ("afterok", ("completed", True), OK), ("afterok", ("failed", True), NEVER), ("afterok", ("suspended", True), WAIT),
        ("afternotok", ("failed", True), OK), ("afternotok", ("cancelled", False), OK),
        ("afternotok", ("completed", True), NEVER),
    ],
)  # fmt: skip
def test_dependency_state(kind, status, result):
    assert dependency_state([(kind, 5)], {5: status}.get)[0] == result


def test_dependency_never_wins_over_wait_and_missing_job_is_never():
    lookup = {1: ("queued", False), 2: ("failed", True)}.get
    assert dependency_state([("afterok", 1), ("afterok", 2)], lookup) == (NEVER, "afterok:2 (job 2 failed)")
    assert dependency_state([("afterany", 3)], lookup)[0] == NEVER


def test_client_and_scheduler_share_the_rules():
    spec = jobspec.from_fields(
        {"command": "true", "workdir": "/tmp", "array": "0-3%2", "depends_on": "afterok:7"}
    )
    assert spec.array == "0-3%2" and [(d.kind, d.job_id) for d in spec.depends_on] == [("afterok", 7)]
    spec.env["RANK"] = "1"  # bypassing the client's builder: the scheduler's check() says the same
    with pytest.raises(errors.InvalidSpec, match="^env: RANK is set by the scheduler"):
        jobspec.check(spec)
    with pytest.raises(errors.InvalidSpec, match="^env: HAI_ARRAY_INDEX is set by the scheduler"):
        jobspec.from_fields({"command": "true", "env": {"HAI_ARRAY_INDEX": "3"}})
