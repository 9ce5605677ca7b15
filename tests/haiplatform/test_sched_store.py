"""The SQL store over SQLite and a real PostgreSQL server: same schema, same behaviour."""

from __future__ import annotations

import pytest

from haiplatform.scheduler.store import JobRecord, Store, Transition


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_factory(request, tmp_path):
    """Opens (and reopens, as a restarted scheduler would) one database of the given kind."""
    if request.param == "sqlite":
        path = str(tmp_path / "s.db")
        opened: list[Store] = []

        def make() -> Store:
            opened.append(Store.sqlite(path))
            return opened[-1]
    else:
        dsn = request.getfixturevalue("fresh_postgres_dsn")
        opened = []

        def make() -> Store:
            opened.append(Store.postgres(dsn))
            return opened[-1]

    yield make
    for s in opened:
        s.close()


def _job(**kw) -> JobRecord:
    base = dict(name="t", user="alice", group="nlp", command="python train.py", workdir="/w", env={"A": "1"},
                nodes=2, ranks_per_node=8, priority=20, base_priority=20, time_limit_s=0.0, state="queued",
                reason="submitted", submitted_at=100.0)  # fmt: skip
    base.update(kw)
    return JobRecord(**base)


def test_jobs_transitions_survive_reopen(store_factory):
    s = store_factory()
    a = s.insert_job(_job(), 100.0, "submitted")
    b = s.insert_job(_job(name="u", user="bob", priority=40, base_priority=40), 101.0, "submitted")
    assert (a, b) == (1, 2)
    job = s.get_job(a)
    job.state, job.assigned, job.run_seq, job.master_port = "running", ["n1", "n2"], 1, 29500
    s.update_job(job, [Transition(a, 102.0, "queued", "running", "started on n1,n2")])
    job.state = "completed"
    s.update_job(job, [Transition(a, 103.0, "running", "completed", "done")])
    s.close()

    s2 = store_factory()
    got = s2.get_job(a)
    assert got.assigned == ["n1", "n2"] and got.env == {"A": "1"} and got.state == "completed"
    assert [t.to_state for t in s2.transitions(a)] == ["queued", "running", "completed"]
    assert [j.job_id for j in s2.active_jobs()] == [b]
    assert [j.job_id for j in s2.list_jobs(user="alice")] == [a]
    assert [j.job_id for j in s2.list_jobs(states=["completed", "queued"])] == [b, a]
    assert s2.get_job(999) is None
    assert s2.insert_job(_job(), 104.0, "submitted") == 3


def test_users_nodes_quotas(store_factory):
    s = store_factory()
    s.add_user("alice", "nlp", False, "tok-a")
    s.add_user("root", "admin", True, "tok-r")
    assert s.user_by_token("tok-a").name == "alice" and not s.user_by_token("tok-a").admin
    assert s.user_by_token("tok-r").admin
    assert s.user_by_token("nope") is None
    s.add_user("alice", "cv", False, "tok-a2")  # re-key: the old token stops working
    assert s.user_by_token("tok-a") is None and s.user_by_token("tok-a2").group == "cv"
    s.save_node("n1", 8, False, "")
    s.save_node("n1", 8, True, "bad DIMM")
    assert s.load_nodes() == [("n1", 8, True, "bad DIMM")]
    s.set_quota("user", "alice", 0, 4)
    s.set_quota("group", "cv", 40, 2)
    s.set_quota("user", "alice", 0, 6)
    assert s.quotas() == {("user", "alice", 0): 6, ("group", "cv", 40): 2}
    s.set_quota("group", "cv", 40, -1)
    assert s.quotas() == {("user", "alice", 0): 6}


def test_job_pages_name_filter_and_counts(store_factory):
    """Pages newest first with an offset; the name filter is a literal, case-insensitive substring
    (``%`` and ``_`` match only themselves); counts cover every matching job, not one page."""
    s = store_factory()
    names = ["train-A", "train_b", "eval 100%", "TRAIN-c", "x\\y", "other"]
    ids = [
        s.insert_job(_job(name=n, user="bob" if i % 2 else "alice"), 100.0 + i, "s")
        for i, n in enumerate(names)
    ]
    last = s.get_job(ids[-1])
    last.state = "cancelled"
    s.update_job(last)
    assert [j.job_id for j in s.list_jobs(limit=2)] == ids[:-3:-1]
    assert [j.job_id for j in s.list_jobs(limit=2, offset=2)] == [ids[3], ids[2]]
    assert s.list_jobs(limit=2, offset=6) == []
    assert [j.name for j in s.list_jobs(name="train")] == ["TRAIN-c", "train_b", "train-A"]
    assert [j.name for j in s.list_jobs(name="n_")] == ["train_b"]
    assert [j.name for j in s.list_jobs(name="0%")] == ["eval 100%"]
    assert [j.name for j in s.list_jobs(name="x\\y")] == ["x\\y"]
    assert [j.name for j in s.list_jobs(name="train", user="bob")] == ["TRAIN-c", "train_b"]
    assert s.count_jobs() == {"queued": 5, "cancelled": 1}
    assert s.count_jobs(user="bob") == {"queued": 2, "cancelled": 1}
    assert s.count_jobs(name="TRAIN") == {"queued": 3}
    assert s.count_jobs(name="nothing") == {}


def test_reader_sees_committed_jobs_on_its_own_connection(store_factory):
    """The status page's reader is a second connection: it sees what the writer committed."""
    s = store_factory()
    reader = s.reader()
    try:
        assert reader.count_jobs() == {}
        a = s.insert_job(_job(name="seen"), 100.0, "submitted")
        assert [j.job_id for j in reader.list_jobs(name="seen")] == [a]
        assert reader.count_jobs() == {"queued": 1}
    finally:
        reader.close()


def test_argv_survives_reopen_and_an_older_database_gains_the_column(store_factory):
    s = store_factory()
    argv = ["python", "-c", "print('a  b')", "$HOME", "é"]
    jid = s.insert_job(_job(argv=argv, command="python -c ..."), 100.0, "submitted")
    old = s.insert_job(_job(), 100.0, "submitted")
    # An older release's table had no argv_json column: drop it, as that database would look.
    s._conn.execute("ALTER TABLE jobs DROP COLUMN argv_json")
    s._conn.commit()
    s2 = store_factory()
    assert s2.get_job(old).argv == [] and s2.get_job(jid).argv == []  # the column came back empty
    job = s2.get_job(jid)
    job.argv = argv
    s2.update_job(job)
    assert store_factory().get_job(jid).argv == argv


def test_database_from_before_job_control_columns_is_upgraded_on_open(store_factory):
    from haiplatform.scheduler import store as store_module

    s = store_factory()
    added = list(store_module._ADDED_COLUMNS)
    for column in added:  # make it look like a database created before these columns existed
        s._execute(f"ALTER TABLE jobs DROP COLUMN {column}")
    s._commit()
    old_columns = [c for c in store_module._JOB_COLUMNS if c not in added]
    values = dict(zip(store_module._JOB_COLUMNS, _job()._values(), strict=True))
    s._execute(
        f"INSERT INTO jobs ({', '.join(old_columns)}) VALUES ({', '.join('?' * len(old_columns))})",
        [values[c] for c in old_columns],
    )
    s._commit()
    s2 = store_factory()
    (job,) = s2.list_jobs()
    assert (job.depends, job.begin_at, job.array_id, job.array_index, job.used_s) == ([], 0.0, 0, -1, 0.0)
    job.depends, job.array_index = [("afterok", 3)], 2
    s2.update_job(job)
    assert s2.get_job(job.job_id).depends == [("afterok", 3)]
    s2.add_usage("alice", 100.0, 1000.0, 50.0)
    assert s2.add_usage("alice", 0.0, 1050.0, 50.0) == pytest.approx(50.0)  # one half-life later
