"""Fixtures: a real scheduler process and real node agents on loopback, with short timings."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ffcommon.launcher import Launcher
from ffcommon.ports import free_port
from haiplatform.scheduler_client import SchedulerClient

# Short intervals so failover and grace periods fit in the test budget.
FAST = {
    "--heartbeat-s": "0.2",
    "--node-timeout-s": "1.5",
    "--cycle-s": "0.1",
    "--suspend-grace-s": "3",
    "--term-s": "1",
    "--lease-s": "4",
}


@dataclass
class Cluster:
    """A scheduler plus agents started by ``launcher``; ``admin`` is an admin client."""

    launcher: Launcher
    root: Path
    port: int
    sched_args: dict[str, str] = field(default_factory=dict)
    extra_sched_args: list[str] = field(default_factory=list)
    admin: SchedulerClient | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def token(self) -> str:
        return (self.root / "admin.token").read_text().strip()

    def start_scheduler(self) -> None:
        args = ["--port", str(self.port), "--db", str(self.root / "sched.db")]
        for k, v in self.sched_args.items():
            args += [k, v]
        self.launcher.start_python(
            "scheduler",
            "haiplatform.scheduler",
            [*args, *self.extra_sched_args],
            port=("127.0.0.1", self.port),
        )
        if self.admin is None:
            self.admin = SchedulerClient(self.address, self.token)

    def kill_scheduler(self) -> None:
        self.launcher.kill("scheduler")

    def start_agent(self, name: str, extra: list[str] | None = None) -> None:
        self.launcher.start_python(
            f"agent-{name}",
            "haiplatform.agent",
            ["--scheduler", self.address, "--node-name", name, "--work-dir", str(self.root / name),
             "--token-file", str(self.root / "admin.token"), "--slots", "8", *(extra or [])],
        )  # fmt: skip

    def wait_nodes_up(self, names: list[str], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            up = {n.name for n in self.admin.nodes() if n.state == "up"}
            if set(names) <= up:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"nodes {sorted(set(names) - up)} not up after {timeout_s} s")
            time.sleep(0.1)

    def client_for(self, user: str, group: str = "", admin: bool = False) -> SchedulerClient:
        return SchedulerClient(self.address, self.admin.add_user(user, group, admin))

    def haictl(self, *args: str, token: str | None = None) -> tuple[int, str, str]:
        import subprocess

        env = {
            "HAI_SCHEDULER": self.address,
            "HAI_TOKEN": token or self.token,
            "HAI_CLIENT_CONFIG": "/nonexistent",
        }
        import os

        out = subprocess.run(
            [sys.executable, "-m", "fireflyer.cli.main", *args], capture_output=True, text=True,
            env={**os.environ, **env}, timeout=60,
        )  # fmt: skip
        return out.returncode, out.stdout, out.stderr


@pytest.fixture
def cluster_factory(launcher: Launcher, tmp_path: Path):
    """Build a cluster: ``cluster_factory(["n1", "n2"], **scheduler_flags)``; all processes die at the end."""
    made: list[Cluster] = []

    def make(nodes: list[str], extra_sched_args: list[str] | None = None, **flags: str) -> Cluster:
        args = dict(FAST)
        args.update({f"--{k.replace('_', '-')}": str(v) for k, v in flags.items()})
        c = Cluster(launcher, tmp_path, free_port(), args, extra_sched_args or [])
        c.start_scheduler()
        for n in nodes:
            c.start_agent(n)
        c.wait_nodes_up(nodes)
        made.append(c)
        return c

    yield make
    for c in made:
        if c.admin is not None:
            c.admin.close()


PG_BIN = Path("/usr/lib/postgresql/15/bin")


@pytest.fixture(scope="session")
def postgres_dsn():
    """A real PostgreSQL 15 server on a free loopback port, run as the ``postgres`` user; skips if unavailable."""
    import pwd
    import shutil
    import subprocess
    import tempfile

    if not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL binaries not found in /usr/lib/postgresql/15/bin")
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres user")
    pytest.importorskip("psycopg")
    root = Path(tempfile.mkdtemp(prefix="hai-pg-"))
    os.chown(root, pw.pw_uid, pw.pw_gid)
    data = root / "data"
    port = free_port()
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([*as_pg, *argv], capture_output=True, text=True, timeout=120)

    out = run(str(PG_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
    if out.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"initdb failed: {out.stderr[-500:]}")
    opts = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    out = run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "pg.log"), "-w", "start")
    if out.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        pytest.skip(f"pg_ctl start failed: {out.stderr[-500:]}")
    try:
        yield f"host=127.0.0.1 port={port} user=postgres dbname=postgres"
    finally:
        run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def fresh_postgres_dsn(postgres_dsn):
    """A new empty database on the session's PostgreSQL server."""
    import uuid

    import psycopg

    name = "hai_" + uuid.uuid4().hex[:12]
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield postgres_dsn.replace("dbname=postgres", f"dbname={name}")
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
