"""A postgresql:// URL opens the scheduler's Store and fs3's Database alike (one URL convention)."""

from __future__ import annotations

import pytest

from ffcommon import db
from haiplatform.scheduler.store import Store

pytestmark = pytest.mark.postgres


def _url(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    p = conninfo_to_dict(dsn)
    return f"postgresql://{p['user']}@{p['host']}:{p['port']}/{p['dbname']}"


def test_one_postgresql_url_serves_store_and_database(fresh_postgres_dsn):
    url = _url(fresh_postgres_dsn)
    store = Store.open(url)
    try:
        assert store.dialect == db.POSTGRES
        store.add_user("alice", "g", True, "tok")
    finally:
        store.close()
    d = db.Database(url)
    try:
        assert d.is_pg
        row = d.run(
            lambda cur: cur.one("SELECT group_name FROM users WHERE name = ?", ("alice",)), write=False
        )
        assert row == ("g",)
    finally:
        d.close()
