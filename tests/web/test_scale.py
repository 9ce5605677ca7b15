"""The status page at 1,000 jobs in headless Chromium: true counts, a pager, filters, hostile names
drawn escaped within the row, per-node GPU use, the fs3 panel and the charts."""

from __future__ import annotations

import json
import time

import pytest

from haiplatform.scheduler.store import JobRecord, Store

pytestmark = pytest.mark.browser

N_JOBS = 1000
PAGE = 50
LONG_NAME = "long-" + "x" * 4995  # 5,000 characters
BIDI_NAME = "invoice\u202egnp.exe\u0000\n\u2066end"  # right-to-left override, NUL, newline, isolate
BIDI_SHOWN = "invoice\\u202egnp.exe\\u0000\\u000a\\u2066end"


def _js(s: str) -> str:
    return json.dumps(s)


def _stored_before_the_limits(db_path, name: str) -> int:
    """A finished job with ``name`` written straight to the scheduler's database, as jobs submitted
    before names were limited are: the page must draw them safely whatever the database holds."""
    store = Store.sqlite(str(db_path))
    try:
        now = time.time()
        job = JobRecord(
            name=name, user="mallory", group="mallory", command="true", workdir="/tmp", env={}, nodes=1,
            ranks_per_node=1, priority=20, base_priority=20, time_limit_s=0.0, state="cancelled",
            reason="cancelled by mallory", submitted_at=now, finished_at=now,
        )  # fmt: skip
        return store.insert_job(job, now, "submitted")
    finally:
        store.close()


def _set_filter(browser, element_id: str, value: str) -> None:
    browser.eval(
        f"(() => {{ const e = document.getElementById({_js(element_id)}); e.value = {_js(value)};"
        " e.dispatchEvent(new Event('input')); })()"
    )


def _pager(browser) -> dict:
    return browser.eval("({...document.getElementById('pager').dataset})")


def _first_row_id(browser) -> int:
    return int(browser.eval("document.querySelector('#jobs tbody tr').dataset.jobId"))


def test_page_at_1000_jobs(fs3_web, fs3_cluster, browser, artifacts_dir) -> None:
    c = fs3_web
    users = {u: c.add_user(u) for u in ("alice", "bob", "carol")}
    # Two 4-rank jobs hold both nodes; everything after them waits.
    running = [
        c.submit(users["alice"], name=f"pretrain-{i}", command="sleep 600", ranks_per_node=4)
        for i in range(2)
    ]
    for job in running:
        c.wait_state(job, {"running"})
    queued = []
    for i in range(N_JOBS - 4):
        user = ("alice", "bob", "carol")[i % 3]
        queued.append(c.submit(users[user], name=f"sweep-{i:04d}", command="sleep 600"))
    for job in queued[:6]:
        c.cancel(job)
    hostile = [_stored_before_the_limits(c.db_path, n) for n in (LONG_NAME, BIDI_NAME)]
    n_queued, n_cancelled = len(queued) - 6, 6 + len(hostile)
    assert len(running) + len(queued) + len(hostile) == N_JOBS

    browser.goto(c.web_url + "/")
    counts = browser.wait_for(
        "(() => { const t = document.getElementById('job-counts').textContent;"
        f" return t.includes('{n_queued} queued') ? t : null; }})()"
    )
    assert "2 running" in counts and f"{N_JOBS} matching" in counts and f"1–{PAGE} shown" in counts, counts
    assert _pager(browser) == {"page": "1", "pages": str(N_JOBS // PAGE), "total": str(N_JOBS)}
    assert browser.eval("document.querySelectorAll('#jobs tbody tr').length") == PAGE
    assert _first_row_id(browser) == max(hostile)  # newest first

    # Hostile names: escaped, one line, cut at the column, whole (escaped) text on hover.
    for job_id, shown in ((hostile[0], LONG_NAME), (hostile[1], BIDI_SHOWN)):
        cell = browser.eval(
            f"(() => {{ const td = document.querySelector('#jobs tr[data-job-id=\"{job_id}\"] td.name');"
            " const tr = td.parentElement, table = td.closest('table');"
            " return {text: td.textContent, title: td.title, kids: td.children.length,"
            " w: td.getBoundingClientRect().width, sw: td.scrollWidth, cw: td.clientWidth,"
            " h: tr.getBoundingClientRect().height, rowW: tr.getBoundingClientRect().width,"
            " tableW: table.getBoundingClientRect().width, viewW: document.documentElement.clientWidth,"
            " pageW: document.documentElement.scrollWidth}; })()"
        )
        assert cell["text"] == shown and cell["title"] == shown and cell["kids"] == 0, cell["text"][:80]
        assert cell["w"] <= 420 and cell["h"] < 48, cell  # a fixed column, a single line
        assert cell["rowW"] <= cell["tableW"] + 1 and cell["pageW"] <= cell["viewW"], cell
    long_cell = f"document.querySelector('#jobs tr[data-job-id=\"{hostile[0]}\"] td.name')"
    assert browser.eval(f"{long_cell}.scrollWidth > {long_cell}.clientWidth")  # cut with an ellipsis
    raw = browser.eval("document.getElementById('jobs').textContent")
    assert not any(ch in raw for ch in "\u202e\u2066\u0000"), "a control character reached the page"

    # The pager walks the server's pages.
    browser.click("#page-next")
    browser.wait_for("document.getElementById('pager').dataset.page === '2'")
    ids_page2 = browser.eval(
        "[...document.querySelectorAll('#jobs tbody tr')].map(r => Number(r.dataset.jobId))"
    )
    assert len(ids_page2) == PAGE and max(ids_page2) < min(hostile)
    browser.click("#page-last")
    browser.wait_for(f"document.getElementById('pager').dataset.page === '{N_JOBS // PAGE}'")
    assert browser.wait_for(
        f"document.querySelector('#jobs tbody tr:last-child')?.dataset.jobId === '{min(running)}'"
    )
    assert "951–1000 shown" in browser.eval("document.getElementById('job-counts').textContent")
    browser.click("#page-first")
    browser.wait_for("document.getElementById('pager').dataset.page === '1'")

    # Filters go to the server; counts follow them.
    _set_filter(browser, "filter-user", "bob")
    n_bob = sum(1 for i in range(N_JOBS - 4) if i % 3 == 1)
    browser.wait_for(f"document.getElementById('pager').dataset.total === '{n_bob}'")
    users_shown = browser.eval(
        "[...document.querySelectorAll('#jobs tbody tr')].map(r => r.cells[2].textContent)"
    )
    assert set(users_shown) == {"bob"}
    _set_filter(browser, "filter-user", "")
    browser.eval(
        "(() => { const s = document.getElementById('filter-state'); s.value = 'running';"
        " s.dispatchEvent(new Event('input')); })()"
    )
    browser.wait_for("document.getElementById('pager').dataset.total === '2'")
    assert sorted(
        browser.eval("[...document.querySelectorAll('#jobs tbody tr')].map(r => Number(r.dataset.jobId))")
    ) == sorted(running)
    browser.eval(
        "(() => { const s = document.getElementById('filter-state'); s.value = '';"
        " s.dispatchEvent(new Event('input')); })()"
    )
    _set_filter(browser, "filter-name", "SWEEP-0042")
    browser.wait_for("document.getElementById('pager').dataset.total === '1'")
    assert browser.eval("document.querySelector('#jobs tbody td.name').textContent") == "sweep-0042"
    _set_filter(browser, "filter-name", "")
    browser.wait_for(f"document.getElementById('pager').dataset.total === '{N_JOBS}'")

    # Nodes: both hold a 4-rank job, so 4 of 8 GPUs each.
    tiles = browser.wait_for(
        "(() => { const t = [...document.querySelectorAll('#grid .node')].map(e => [e.dataset.node,"
        " e.dataset.slotsUsed, e.querySelector('.slots').textContent]); return t.length === 2 ? t : null; })()"
    )
    assert tiles == [["gpu-1", "4", "4/8 GPUs"], ["gpu-2", "4", "4/8 GPUs"]]
    assert "8/16 GPUs in use" in browser.eval("document.getElementById('node-counts').textContent")

    # fs3 panel: every target of the 2 chains x 2 replicas serving, both storage nodes with their disks.
    targets = len(fs3_cluster.routing().chains) * 2
    assert browser.wait_for(
        "(() => { const f = document.getElementById('fs3'); return !document.getElementById('fs3-card').hidden"
        f" && f.dataset.ok === 'true' && f.textContent.includes('{targets} SERVING'); }})()"
    )
    assert browser.eval("document.querySelectorAll('#fs3 table.fs3-nodes tbody tr').length") == 2
    assert "no resync in progress" in browser.eval("document.getElementById('fs3-repairs').textContent")
    assert "used of" in browser.eval("document.querySelector('#fs3 .cap').textContent")

    # Charts: both canvases drawn (some pixels not transparent), and the sampled series behind them.
    for canvas in ("plot-queue", "plot-util"):
        assert (
            browser.eval(
                f"(() => {{ const c = document.getElementById('{canvas}'); const d = c.getContext('2d')"
                ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4)"
                " n += d[i] > 0; return n; })()"
            )
            > 500
        )
    last = c.get_json("/api/utilization?window_s=60")["samples"][-1]
    assert last["queue_length"] == n_queued and last["slots_used"] == 8 and last["slots_total"] == 16
    assert browser.wait_for(
        f"document.getElementById('plot-window').textContent.includes('{n_queued} queued')"
    )

    browser.screenshot(artifacts_dir / "status-page-1000.png")
    browser.send(
        "Emulation.setDeviceMetricsOverride", width=1400, height=1180, deviceScaleFactor=1, mobile=False
    )
    browser.wait_for("document.getElementById('plot-queue').clientWidth > 0")
    time.sleep(2)  # one more poll redraws the charts at the new size
    browser.screenshot(artifacts_dir / "status-page-1000-tall.png")
    # The job page of the 5,000-character name: cut on one line too, the page no wider than the window.
    browser.click(f'#jobs tr[data-job-id="{hostile[0]}"] td a')
    title = browser.wait_for(
        "(() => { const n = document.getElementById('job-name'); if (!n) return null;"
        " return {text: n.textContent, title: n.title, h: n.getBoundingClientRect().height,"
        " pageW: document.documentElement.scrollWidth, viewW: document.documentElement.clientWidth}; })()"
    )
    assert title["text"] == title["title"] == LONG_NAME, title["text"][:80]
    assert title["h"] < 48 and title["pageW"] <= title["viewW"], title
    browser.click("header h1 a")
    browser.wait_for("!document.getElementById('overview').hidden")
    assert browser.eval("typeof window.__xss") == "undefined"
    assert not browser.page_errors(), browser.page_errors()
    assert c.get_json("/api/jobs?state=cancelled")["total"] == n_cancelled
    for job in running + queued[6:]:
        c.cancel(job)
