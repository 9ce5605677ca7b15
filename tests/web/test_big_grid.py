"""A 1,250-node cluster on the page (in headless Chromium): the node grid turns compact, stays a
bounded size, and still tells each node's state and GPU use."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from haiplatform.protos import agent_pb2, scheduler_pb2
from haiplatform.scheduler.core import SchedulerConfig, SchedulerCore
from haiplatform.scheduler.store import Store
from haiplatform.web import WebConfig, WebServer

pytestmark = pytest.mark.browser
N_NODES = 1250


@pytest.fixture
def big_web(tmp_path):
    """A scheduler core that has heard from 1,250 nodes (no loop running, so none times out) and
    started 100 4-node jobs of 8 ranks per node on them; its web server on a free port."""
    store = Store.sqlite(str(tmp_path / "sched.db"))
    core = SchedulerCore(store, SchedulerConfig())
    admin = core.authenticate(core.bootstrap_admin(tmp_path / "admin.token"))
    for i in range(N_NODES):
        core.heartbeat(
            agent_pb2.HeartbeatRequest(node=f"n{i:04d}", slots=8, healthy=True, agent_started_at=time.time())
        )
    for i in range(100):
        spec = scheduler_pb2.JobSpec(
            name=f"big-{i}", command="true", workdir="/tmp", nodes=4, ranks_per_node=8
        )
        core.submit(admin, spec)
    core.cycle()
    web = WebServer(core, "127.0.0.1", 0, WebConfig(), registry=CollectorRegistry())
    web.start()
    try:
        yield web
    finally:
        web.stop()
        store.close()


def test_grid_of_1250_nodes_is_compact(big_web, browser, artifacts_dir) -> None:
    browser.goto(f"http://127.0.0.1:{big_web.port}/")
    browser.wait_for(f"document.querySelectorAll('#grid .node').length === {N_NODES}")
    grid = browser.eval(
        "(() => { const g = document.getElementById('grid'); const r = g.getBoundingClientRect();"
        " const busy = [...g.querySelectorAll('.node[data-state=\"busy\"]')];"
        " return {compact: g.classList.contains('compact'), h: r.height, w: r.width,"
        " busy: busy.length, full: busy.filter(e => e.dataset.slotsUsed === '8').length,"
        " title: busy[0].title, fill: busy[0].querySelector('.use').getBoundingClientRect().height,"
        " idleFill: g.querySelector('.node[data-state=\"idle\"] .use').getBoundingClientRect().height,"
        " pageW: document.documentElement.scrollWidth, viewW: document.documentElement.clientWidth}; })()"
    )
    assert grid["compact"] and grid["busy"] == grid["full"] == 400, grid
    assert grid["h"] < 600 and grid["pageW"] <= grid["viewW"], grid  # 1,250 nodes in a bounded card
    assert grid["fill"] == 16 and grid["idleFill"] == 0, grid  # the fill is the GPU share in use
    assert grid["title"].startswith("n0") and "busy" in grid["title"] and "8/8 GPUs" in grid["title"], grid
    assert "#" in grid["title"] and "big-" in grid["title"]
    counts = browser.eval("document.getElementById('node-counts').textContent")
    assert "400 busy" in counts and "850 idle" in counts and f"3200/{8 * N_NODES} GPUs in use" in counts
    browser.screenshot(artifacts_dir / "status-page-1250-nodes.png")
    assert not browser.page_errors(), browser.page_errors()
