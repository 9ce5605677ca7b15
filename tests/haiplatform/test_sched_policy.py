"""The pure scheduling policy: priority/FIFO, gang allocation, preemption rules, decay, quotas, backfill."""

from __future__ import annotations

import pytest

from haiplatform.scheduler.policy import (
    NodeView,
    PolicyConfig,
    Priority,
    QueuedJob,
    RunningJob,
    schedule,
)

LOW, NORMAL, ABOVE, HIGH = Priority.LOW, Priority.NORMAL, Priority.ABOVE_NORMAL, Priority.HIGH
NOW = 10_000.0


def nodes(n: int, down: tuple[str, ...] = ()) -> list[NodeView]:
    return [NodeView(f"n{i:02d}", f"n{i:02d}" not in down) for i in range(n)]


def run(
    job_id, user, prio, node_names, started=NOW - 100, first=None, suspending=False, limit=0.0, group=None
):
    return RunningJob(job_id, user, group or user, int(prio), tuple(node_names), started,
                      first if first is not None else started, suspending, limit)  # fmt: skip


def q(job_id, user, prio, n, submitted=NOW - 10, limit=0.0, group=None):
    return QueuedJob(job_id, user, group or user, int(prio), n, submitted, limit)


def test_priority_then_fifo_and_gang_allocation():
    queue = [
        q(1, "a", NORMAL, 2, submitted=5),
        q(2, "b", HIGH, 3, submitted=9),
        q(3, "c", NORMAL, 2, submitted=1),
    ]
    d = schedule(nodes(5), [], queue, NOW, PolicyConfig(backfill=False))
    # HIGH first (3 nodes), then the older NORMAL job (submitted at 1); job 1 would need 2 of the 0 left.
    assert d.start == [(2, ("n00", "n01", "n02")), (3, ("n03", "n04"))]
    assert d.preempt == [] and d.decay == []


def test_gang_never_partial_and_down_nodes_skipped():
    d = schedule(
        nodes(4, down=("n01",)),
        [],
        [q(1, "a", NORMAL, 4), q(2, "a", NORMAL, 3)],
        NOW,
        PolicyConfig(backfill=False),
    )
    assert d.start == []  # job 1 needs 4 of 3 schedulable nodes; job 2 waits behind it (FIFO)


@pytest.mark.parametrize(
    ("victim_user", "victim_prio", "queued_user", "queued_prio", "preempted"),
    [
        ("a", LOW, "b", HIGH, True),
        ("a", LOW, "a", HIGH, True),  # same user, higher priority: allowed
        ("a", NORMAL, "a", NORMAL, False),  # same user, same priority: never
        ("a", NORMAL, "b", NORMAL, False),  # same priority: FIFO, no preemption
        ("a", HIGH, "b", NORMAL, False),
    ],
)
def test_preemption_rules(victim_user, victim_prio, queued_user, queued_prio, preempted):
    d = schedule(
        nodes(2),
        [run(1, victim_user, victim_prio, ["n00", "n01"])],
        [q(2, queued_user, queued_prio, 2)],
        NOW,
        PolicyConfig(),
    )
    assert d.preempt == ([(1, 2)] if preempted else [])
    assert d.start == []


def test_victims_lowest_priority_then_youngest_and_only_as_many_as_needed():
    running = [
        run(1, "a", NORMAL, ["n00"], started=NOW - 50),
        run(2, "b", LOW, ["n01"], started=NOW - 500),
        run(3, "c", LOW, ["n02"], started=NOW - 5),  # youngest LOW: least work lost
        run(4, "d", LOW, ["n03"], started=NOW - 100),
    ]
    d = schedule(nodes(4), running, [q(9, "e", HIGH, 2)], NOW, PolicyConfig())
    assert d.preempt == [(3, 9), (4, 9)]


def test_suspending_nodes_are_awaited_not_preempted_again():
    running = [run(1, "a", LOW, ["n00", "n01"], suspending=True), run(2, "b", LOW, ["n02"])]
    d = schedule(nodes(3), running, [q(9, "c", HIGH, 2), q(10, "d", NORMAL, 1)], NOW, PolicyConfig())
    assert d.preempt == [] and d.start == []  # job 9 waits for n00/n01; job 10 may not take them


def test_above_normal_decays_after_decay_s_and_loses_protection():
    cfg = PolicyConfig(decay_s=1800)
    young = run(1, "a", ABOVE, ["n00"], first=NOW - 100)
    old = run(2, "b", ABOVE, ["n01"], first=NOW - 1800)
    d = schedule(nodes(2), [young, old], [q(3, "c", ABOVE, 1)], NOW, cfg)
    assert d.decay == [2]
    assert d.preempt == [(2, 3)]  # the decayed job is NORMAL now, below the queued ABOVE_NORMAL


@pytest.mark.parametrize(
    ("quotas", "started"),
    [
        ({}, [1, 2]),
        ({("user", "a", 0): 3}, [2]),  # a holds 2, job 1 would make it 4
        ({("user", "a", int(NORMAL)): 2}, [2]),  # per-priority quota
        ({("user", "a", int(HIGH)): 2}, [1, 2]),  # a different priority's quota does not apply
        ({("group", "g", 0): 2}, [2]),
    ],
)
def test_quotas_skip_jobs_over_limit_without_blocking_others(quotas, started):
    running = [run(5, "a", NORMAL, ["n00", "n01"], group="g")]
    queue = [q(1, "a", NORMAL, 2, submitted=1, group="g"), q(2, "b", NORMAL, 1, submitted=2)]
    d = schedule(nodes(6), running, queue, NOW, PolicyConfig(quotas=quotas))
    assert [j for j, _ in d.start] == started


@pytest.mark.parametrize(
    ("limit_s", "n", "backfilled"),
    [
        (50.0, 2, True),  # ends before the head's reserved start (running job ends at NOW+100)
        (500.0, 2, False),  # would still hold nodes when the head can start
        (500.0, 1, True),  # ...but uses only a node the head will not need
        (0.0, 1, True),  # no limit: only on spare nodes
        (0.0, 2, False),
    ],
)
def test_easy_backfill_never_delays_head(limit_s, n, backfilled):
    # 4 nodes; a running HIGH job holds 2 until NOW+100; head (HIGH, 3 nodes) waits; 2 nodes free,
    # of which the head needs 1 at NOW+100, so 1 is spare.
    running = [run(1, "a", HIGH, ["n00", "n01"], started=NOW - 100, limit=200)]
    queue = [q(2, "b", HIGH, 3, submitted=1), q(3, "c", LOW, n, submitted=2, limit=limit_s)]
    d = schedule(nodes(4), running, queue, NOW, PolicyConfig())
    assert d.preempt == []
    assert [j for j, _ in d.start] == ([3] if backfilled else [])
    d_off = schedule(nodes(4), running, queue, NOW, PolicyConfig(backfill=False))
    assert d_off.start == []


def test_no_backfill_behind_head_waiting_on_jobs_without_time_limit():
    running = [run(1, "a", HIGH, ["n00", "n01"])]
    queue = [q(2, "b", HIGH, 3), q(3, "c", LOW, 1, limit=10)]
    assert schedule(nodes(3), running, queue, NOW, PolicyConfig()).start == []


def test_policy_is_pure():
    running = [run(1, "a", LOW, ["n00"])]
    queue = [q(2, "b", HIGH, 1)]
    ns = nodes(1)
    before = (list(running), list(queue), list(ns))
    d1 = schedule(ns, running, queue, NOW, PolicyConfig())
    d2 = schedule(ns, running, queue, NOW, PolicyConfig())
    assert d1 == d2 and (running, queue, ns) == before


@pytest.mark.parametrize("backfill", [True, False])
def test_job_needing_more_than_the_schedulable_nodes_blocks_nobody_with_backfill(backfill):
    # n01 is down: job 1 (4 nodes) cannot start whatever ends; with backfill, job 2 runs meanwhile.
    d = schedule(
        nodes(4, down=("n01",)),
        [],
        [q(1, "a", HIGH, 4), q(2, "b", LOW, 1)],
        NOW,
        PolicyConfig(backfill=backfill),
    )
    assert [j for j, _ in d.start] == ([2] if backfill else [])
    assert d.waiting[1] == "Resources"


def test_pending_reasons_name_resources_quota_and_array_limit():
    running = [run(9, "a", NORMAL, ["n00"], limit=100)]
    running[0] = RunningJob(9, "a", "a", int(NORMAL), ("n00",), NOW - 10, NOW - 10, False, 100.0, array_id=7)
    queue = [
        QueuedJob(1, "a", "a", int(NORMAL), 1, 1.0, 0.0, 7, 1),  # array 7 already runs its 1 allowed task
        q(2, "q", NORMAL, 1, submitted=2),  # over its user quota
        q(3, "b", NORMAL, 3, submitted=3),  # head: needs 3, 2 free
        q(4, "c", NORMAL, 2, submitted=4),  # behind the head, would delay it
    ]
    d = schedule(nodes(3), running, queue, NOW, PolicyConfig(quotas={("user", "q", 0): 0}))
    assert d.start == []
    assert d.waiting == {1: "ArrayTaskLimit", 2: "QuotaGroup", 3: "Resources"}  # 4: Priority (the default)


def test_array_limit_counts_tasks_started_in_the_same_cycle():
    queue = [QueuedJob(k, "a", "a", int(NORMAL), 1, float(k), 0.0, 1, 2) for k in range(1, 6)]
    d = schedule(nodes(5), [], queue, NOW, PolicyConfig())
    assert [j for j, _ in d.start] == [1, 2]


def test_fair_share_orders_users_of_a_group_by_decayed_usage():
    # Same group and priority: heavy user's older job yields its place to the light user's job;
    # another group's job keeps its FIFO place; a higher priority still goes first.
    queue = [
        q(1, "heavy", NORMAL, 1, submitted=1, group="g"),
        q(2, "other", NORMAL, 1, submitted=2, group="h"),
        q(3, "light", NORMAL, 1, submitted=3, group="g"),
        q(4, "heavy", HIGH, 1, submitted=4, group="g"),
    ]
    usage = {"heavy": 1e6, "light": 10.0}
    d = schedule(nodes(3), [], queue, NOW, PolicyConfig(usage=usage))
    assert [j for j, _ in d.start] == [4, 3, 2]
    d = schedule(nodes(3), [], queue, NOW, PolicyConfig())  # no usage: plain FIFO
    assert [j for j, _ in d.start] == [4, 1, 2]
