"""The status page in a real headless Chromium against a real scheduler with real agents."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.browser

XSS_NAME = "<script>window.__xss=1</script><img src=x onerror=window.__xss=2>"


def _js(s: str) -> str:
    return json.dumps(s)


def _row_state(job_id: int) -> str:
    return f"document.querySelector('#jobs tr[data-job-id=\"{job_id}\"]')?.dataset.state"


def test_page_tracks_jobs_without_reload(cluster, browser, artifacts_dir) -> None:
    """Grid shows the agents; a job appears and changes state live; job page shows history and log;
    cancel without a token is refused; user strings render as text, never as markup."""
    browser.goto(cluster.web_url + "/")
    names = browser.wait_for(
        f"(() => {{ const n = [...document.querySelectorAll('#grid .node')].map(e => e.dataset.node);"
        f" return n.length === {len(cluster.nodes)} ? n : null; }})()"
    )
    assert names == list(cluster.nodes)
    browser.eval("window.__marker = 42")  # gone if the page ever reloads

    alice = cluster.add_user("alice")
    job = cluster.submit(
        alice, name=XSS_NAME, command="echo \"hello <b>web</b> from rank $RANK\"; sleep 120"
    )  # fmt: skip
    assert browser.wait_for(f"{_row_state(job)} === 'running'")
    cell = f"document.querySelector('#jobs tr[data-job-id=\"{job}\"] td.name')"
    assert browser.eval(f"{cell}.textContent") == XSS_NAME
    assert browser.eval(f"{cell}.children.length") == 0  # text, not elements
    node = cluster.job(job).assigned_nodes[0]
    tile = f"document.querySelector('#grid .node[data-node=\"{node}\"]')"
    assert browser.wait_for(f"{tile}.dataset.state === 'busy' && {tile}.textContent.includes('#{job}')")

    # A job wider than the free nodes waits in the queue, visibly.
    wide = cluster.submit(alice, name="wide-job", nodes=len(cluster.nodes), command="sleep 120")
    assert browser.wait_for(f"{_row_state(wide)} === 'queued'")
    browser.wait_for("document.querySelectorAll('#grid .node[data-state=\"idle\"]').length === 2")

    # Job page: history and the log (owner-only, so first anonymous, then signed in).
    browser.click(f'#jobs tr[data-job-id="{job}"] td a')
    assert browser.wait_for("document.getElementById('job-name')?.textContent") == XSS_NAME
    history = browser.wait_for(
        "(() => { const r = [...document.querySelectorAll('#history tbody tr')].map(t => t.cells[2].textContent);"
        " return r.includes('running') ? r : null; })()"
    )
    assert history[:2] == ["queued", "running"]
    assert "sign in" in browser.wait_for("document.querySelector('#logs pre.log')?.textContent")

    # Cancel without a token: refused, and the job keeps running.
    browser.click("#job-actions .act-cancel")
    refusal = browser.wait_for(
        "(() => { const n = document.getElementById('notice'); return !n.hidden && n.textContent; })()"
    )
    assert "refused" in refusal and "401" in refusal, refusal
    assert cluster.job(job).state == "running"

    # Sign in as the owner: the log appears (as text), and cancel now works.
    browser.eval(f"document.getElementById('token').value = {_js(alice)}")
    browser.click("#signin")
    browser.wait_for("document.getElementById('whoami').textContent === 'alice'")
    log = browser.wait_for(
        "(() => { const p = document.querySelector('#logs pre.log'); "
        "return p && p.textContent.includes('from rank') ? p.textContent : null; })()"
    )
    assert "hello <b>web</b> from rank 0" in log
    assert browser.eval("document.querySelectorAll('#logs b').length") == 0
    browser.screenshot(artifacts_dir / "status-page-job.png")
    browser.click("#job-actions .act-cancel")
    browser.wait_for("document.getElementById('job-state').textContent === 'cancelled'")
    assert cluster.job(job).state == "cancelled"

    # Back on the overview, the queued job has started on the freed nodes: queued -> running, live.
    browser.click("header h1 a")
    assert browser.wait_for(f"{_row_state(wide)} === 'running'")
    assert browser.wait_for("document.querySelectorAll('#grid .node[data-state=\"busy\"]').length") == len(
        cluster.nodes
    )

    later = cluster.submit(alice, name="eval-sweep", command="sleep 120")
    assert browser.wait_for(f"{_row_state(later)} === 'queued'")
    browser.screenshot(artifacts_dir / "status-page.png")

    assert browser.eval("window.__marker") == 42, "the page reloaded"
    assert browser.eval("typeof window.__xss") == "undefined", "a job name was executed as markup"
    assert browser.eval("document.querySelectorAll('#jobs img, #grid img').length") == 0
    cluster.cancel(wide)
    cluster.cancel(later)
    # Network errors are the 401s we provoked; anything else (JS exceptions, CSP violations) is a bug.
    errors = [e for e in browser.page_errors() if "status of 401" not in e]
    assert not errors, errors
