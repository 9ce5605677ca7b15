"""One database URL convention for every service: sqlite:///path, a bare file path, postgresql://.

The same URL opens fs3's transactional Database and the scheduler's Store; a URL of no supported
database is refused with an error naming the flag.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ffcommon import db


@pytest.mark.parametrize(
    "url, dialect, location",
    [
        ("sqlite:///var/lib/fs3.db", "sqlite", "/var/lib/fs3.db"),
        ("sqlite://rel/fs3.db", "sqlite", "rel/fs3.db"),
        ("/var/lib/sched.db", "sqlite", "/var/lib/sched.db"),
        ("sched.db", "sqlite", "sched.db"),
        ("postgresql://u@h:5432/hai", "postgres", "postgresql://u@h:5432/hai"),
        ("postgres://u@h/hai", "postgres", "postgres://u@h/hai"),
    ],
)
def test_every_url_form_parses_to_its_dialect_and_location(url, dialect, location):
    got = db.parse_url(url)
    assert (got.dialect, got.location) == (dialect, location)


@pytest.mark.parametrize("url", ["", "sqlite://", "mysql://x/y", "file:///x.db"])
def test_unsupported_urls_are_refused_naming_the_flag(url):
    with pytest.raises(ValueError, match=r"^--meta-db: unsupported database url"):
        db.parse_url(url, flag="--meta-db")


@pytest.mark.parametrize("form", ["url", "bare"])
def test_database_and_store_open_the_same_sqlite_file_by_url_or_path(tmp_path, form):
    from haiplatform.scheduler.store import Store

    path = tmp_path / "shared.db"
    url = db.sqlite_url(path) if form == "url" else str(path)
    d = db.Database(url)
    d.executescript("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    d.run(lambda cur: cur.execute("INSERT INTO t VALUES (?, ?)", (1, "one")))
    assert d.run(lambda cur: cur.one("SELECT v FROM t WHERE k = ?", (1,)), write=False) == ("one",)
    d.close()
    store = Store.open(url)
    try:
        store.add_user("alice", "g", False, "tok")
        assert store.user_by_token("tok").name == "alice"
        reader = store.reader()  # a second connection to the same file
        assert reader.user("alice").group == "g"
        reader.close()
    finally:
        store.close()
    assert path.exists()


def test_scheduler_refuses_a_db_url_of_no_supported_database(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "haiplatform.scheduler", "--port", "0", "--db", "mysql://x/hai"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert "--db: unsupported database url 'mysql://x/hai'" in out.stderr
