"""Every service's /metrics (scheduler + status page, agent, mgmtd, meta, storage) passes
``promtool check metrics`` (Debian's prometheus package) after real traffic through each."""

from __future__ import annotations

import shutil
import subprocess
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (apt-get install prometheus)"
)


def promtool(text: str) -> tuple[int, str]:
    """(exit status, output) of ``promtool check metrics`` on ``text``."""
    out = subprocess.run(
        [PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30
    )  # fmt: skip
    return out.returncode, (out.stdout + out.stderr).strip()


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as rsp:
        return rsp.read().decode()


def test_promtool_rejects_a_quantile_label_on_a_gauge() -> None:
    """The check itself can fail: the scheduler's old policy gauge is what it refuses."""
    bad = (
        "# HELP hai_scheduler_policy_seconds Time the scheduling policy took\n"
        "# TYPE hai_scheduler_policy_seconds gauge\n"
        'hai_scheduler_policy_seconds{quantile="0.5"} 0.001\n'
    )
    rc, out = promtool(bad)
    assert rc != 0 and "quantile" in out, out


def test_every_service_passes_promtool(fs3_web, fs3_cluster) -> None:
    # Traffic through each service first, so the per-method and per-route families have samples.
    client = fs3_cluster.client()
    client.write_bytes("/promtool-check", b"p" * 4096)
    assert client.read_bytes("/promtool-check") == b"p" * 4096
    job = fs3_web.submit(name="metered", command="echo hi")
    fs3_web.wait_state(job, {"completed"})
    assert fs3_web.http(f"/api/jobs/{job}/logs?rank=0", token=fs3_web.admin_token)[0] == 200
    fs3_web.get_json("/api/jobs")

    urls = {"scheduler": fs3_web.web_url + "/metrics"}
    urls |= {f"agent-{n}": url for n, url in fs3_web.agent_metrics.items()}
    urls |= {n: fs3_cluster.metrics_url(n) for n in ("mgmtd", "meta", "storage-0", "storage-1")}
    texts = {name: scrape(url) for name, url in urls.items()}
    problems = {}
    for name, text in texts.items():
        rc, out = promtool(text)
        if rc != 0 or out:
            problems[name] = out
    assert not problems, problems

    families = {
        name: {f.name: f for f in text_string_to_metric_families(text)} for name, text in texts.items()
    }
    sched = families["scheduler"]
    assert {"hai_queue_length", "hai_node_slots_used", "hai_web_requests", "grpc_server_handled"} <= set(
        sched
    )
    policy = sched["hai_scheduler_policy_seconds"]
    assert policy.type == "gauge" and {s.labels["stat"] for s in policy.samples} == {"p50", "p99", "max"}
    assert all("quantile" not in s.labels for s in policy.samples)
    for node in fs3_web.nodes:  # the log read above went through one agent's interceptor
        assert "grpc_server_handled" in families[f"agent-{node}"]
    assert any(
        s.labels.get("grpc_method") == "ReadLog"
        for node in fs3_web.nodes
        for s in families[f"agent-{node}"]["grpc_server_handled"].samples
    )
    assert "fs3_targets" in families["mgmtd"]
