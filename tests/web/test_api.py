"""The JSON API over real HTTP against an in-process scheduler core on a real SQLite store:
server-side pages with true totals, filters, slot use, and bad parameters named in the error."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from haiplatform.protos import agent_pb2, scheduler_pb2
from haiplatform.scheduler.core import SchedulerConfig, SchedulerCore
from haiplatform.scheduler.store import Store, User
from haiplatform.web import WebConfig, WebServer, openapi_document

N_JOBS = 1000
N_CANCELLED = 200
N_SUSPENDED = 30


@dataclass
class Api:
    core: SchedulerCore
    web: WebServer
    url: str
    admin: User
    ids: dict[str, list[int]]  # by user: job ids, oldest first

    def get(self, path: str, **query: Any) -> tuple[int, dict[str, Any]]:
        qs = urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        try:
            with urllib.request.urlopen(f"{self.url}{path}{'?' + qs if qs else ''}", timeout=10) as rsp:
                return rsp.status, json.loads(rsp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def ok(self, path: str, **query: Any) -> dict[str, Any]:
        status, body = self.get(path, **query)
        assert status == 200, (path, query, status, body)
        return body


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """1,000 jobs of three users: 2 running on the two nodes, 200 cancelled, 30 suspended, the rest queued."""
    base: Path = tmp_path_factory.mktemp("web-api")
    store = Store.sqlite(str(base / "sched.db"))
    core = SchedulerCore(store, SchedulerConfig())
    admin = core.authenticate(core.bootstrap_admin(base / "admin.token"))
    for name in ("n1", "n2"):  # two live 8-slot nodes (no agent process: no ranks ever start)
        core.heartbeat(
            agent_pb2.HeartbeatRequest(node=name, slots=8, healthy=True, agent_started_at=time.time())
        )
    users = {u: core.authenticate(core.add_user(admin, u, "lab", False)) for u in ("alice", "bob", "carol")}
    ids: dict[str, list[int]] = {u: [] for u in users}
    for i in range(N_JOBS):
        u = ("alice", "bob", "carol")[i % 3]
        spec = scheduler_pb2.JobSpec(
            name=f"{'train' if i % 2 else 'eval'}-{i:04d}", command="sleep 1", workdir="/tmp", nodes=1,
            ranks_per_node=4,
        )  # fmt: skip
        ids[u].append(core.submit(users[u], spec))
    everyone = sorted(j for js in ids.values() for j in js)
    for j in everyone[:N_CANCELLED]:
        core.cancel(admin, j)
    for j in everyone[N_CANCELLED : N_CANCELLED + N_SUSPENDED]:
        core.suspend(admin, j)
    core.cycle()  # the policy starts the two oldest queued jobs, one per node
    web = WebServer(core, "127.0.0.1", 0, WebConfig(page_size=50), registry=CollectorRegistry())
    web.start()
    try:
        yield Api(core, web, f"http://127.0.0.1:{web.port}", admin, ids)
    finally:
        web.stop()
        store.close()


def test_counts_are_true_totals_not_one_page(api):
    body = api.ok("/api/jobs")
    assert len(body["jobs"]) == 50 and body["limit"] == 50 and body["offset"] == 0
    assert body["total"] == N_JOBS
    queued = N_JOBS - N_CANCELLED - N_SUSPENDED - 2
    assert body["counts"] == {
        "queued": queued, "running": 2, "suspending": 0, "suspended": N_SUSPENDED, "completed": 0,
        "failed": 0, "cancelled": N_CANCELLED,
    }  # fmt: skip
    assert [j["id"] for j in body["jobs"]] == sorted((j["id"] for j in body["jobs"]), reverse=True)
    assert body["jobs"][0]["id"] == max(max(v) for v in api.ids.values())


def test_pages_cover_every_job_once(api):
    seen: list[int] = []
    for offset in range(0, N_JOBS, 300):
        body = api.ok("/api/jobs", limit=300, offset=offset)
        assert body["total"] == N_JOBS
        seen += [j["id"] for j in body["jobs"]]
    assert len(seen) == N_JOBS and len(set(seen)) == N_JOBS
    past = api.ok("/api/jobs", limit=50, offset=N_JOBS)
    assert past["jobs"] == [] and past["total"] == N_JOBS  # an empty page, with the truth beside it


def test_filters_by_user_state_and_name(api):
    bob = api.ok("/api/jobs", user="bob", limit=1000)
    assert {j["user"] for j in bob["jobs"]} == {"bob"} and bob["total"] == len(api.ids["bob"])
    assert sorted(j["id"] for j in bob["jobs"]) == api.ids["bob"]

    running = api.ok("/api/jobs", state="running")
    assert running["total"] == 2 and {j["state"] for j in running["jobs"]} == {"running"}
    assert all(j["assigned_nodes"] for j in running["jobs"])
    active = api.ok("/api/jobs", state="queued,suspended", limit=1)
    assert active["total"] == active["counts"]["queued"] + active["counts"]["suspended"]

    trains = api.ok("/api/jobs", name="TRAIN-", limit=1000)
    assert trains["total"] == N_JOBS // 2 and all(j["name"].startswith("train-") for j in trains["jobs"])
    one = api.ok("/api/jobs", name="train-0999")
    assert [j["name"] for j in one["jobs"]] == ["train-0999"] and one["total"] == 1
    assert api.ok("/api/jobs", name="%")["total"] == 0  # a literal %, not a wildcard
    mixed = api.ok("/api/jobs", user="carol", state="cancelled", name="eval")
    assert all(j["user"] == "carol" and j["state"] == "cancelled" for j in mixed["jobs"])
    assert mixed["total"] == mixed["counts"]["cancelled"] > 0


def test_nodes_report_gpu_slot_use(api):
    body = api.ok("/api/nodes")
    assert [(n["name"], n["slots"], n["slots_used"]) for n in body["nodes"]] == [("n1", 8, 4), ("n2", 8, 4)]
    assert body["slots"] == {"total": 16, "used": 8}
    sample = api.web.history.sample()
    assert (sample.slots_total, sample.slots_used, sample.jobs_running) == (16, 8, 2)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": 0}, r"^limit: must be between 1 and 1000, got 0$"),
        ({"limit": 1001}, r"^limit: must be between 1 and 1000"),
        ({"offset": -1}, r"^offset: must be between 0 and"),
        ({"offset": "x"}, r"^offset: must be an integer, got 'x'$"),
        ({"state": "queued,bogus"}, r"^state: unknown state 'bogus' \(one of queued, running"),
        ({"name": "n" * 257}, r"^name: at most 256 characters, got 257$"),
        ({"user": "u" * 300}, r"^user: at most 256 characters, got 300$"),
    ],
)
def test_bad_parameters_are_named(api, query, message):
    status, body = api.get("/api/jobs", **query)
    assert status == 400 and re.search(message, body["error"]), body


def test_fs3_panel_off_without_a_cluster(api):
    assert api.ok("/api/fs3") == {"configured": False}
    assert api.ok("/api/config")["fs3"] is False


def test_openapi_lists_every_route(api):
    documented = set(openapi_document()["paths"])
    served = {name for _, name, _, _ in api.web._routes} - {"/", "/static/{name}", "/healthz"}
    served.remove("/api/jobs/{job_id}/{action}")
    served |= {f"/api/jobs/{{job_id}}/{a}" for a in ("cancel", "suspend", "resume")}
    assert served <= documented, served - documented


def test_queued_jobs_carry_their_pending_reason(api):
    page = api.ok("/api/jobs", state="queued", limit=5)["jobs"]
    assert page and all(j["pending_reason"] == "Priority" for j in page)  # both nodes are busy
    running = api.ok("/api/jobs", state="running")["jobs"]
    assert running and all(j["pending_reason"] == "" for j in running)
    queued = [
        j for js in api.ids.values() for j in js if (job := api.core.jobs.get(j)) and job.state == "queued"
    ]
    oldest_queued = min(queued)
    assert api.ok(f"/api/jobs/{oldest_queued}")["job"]["pending_reason"] == "Resources"  # the queue's head
