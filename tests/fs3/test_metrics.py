"""Every fs3 service serves Prometheus /metrics: per-method requests, latencies and bytes, and mgmtd's view of the cluster."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at ``url`` as {(name, sorted labels): value}."""
    with urllib.request.urlopen(url, timeout=10) as rsp:
        text = rsp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def sample(samples: dict, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def test_storage_meta_and_mgmtd_metrics(cluster3):
    client = cluster3.client()
    data = b"m" * (3 << 20)
    with client.open("/metered", "wb") as f:
        f.write(data)
    with client.open("/metered", "rb") as f:
        assert f.read() == data
    grpc_only = cluster3.client(data_port=False)  # the gRPC path counts per method
    grpc_only.write_bytes("/metered-grpc", b"g" * 1000)
    assert grpc_only.read_bytes("/metered-grpc") == b"g" * 1000

    # storage: the chunk writes and reads these clients just made, with their bytes and latencies
    writes = reads = received = sent = grpc_updates = grpc_reads = 0.0
    for i in range(cluster3.config.num_storage):
        s = scrape(cluster3.metrics_url(f"storage-{i}"))
        grpc_updates += sample(s, "grpc_server_handled_total", grpc_method="Update", grpc_code="OK")
        grpc_reads += sample(s, "grpc_server_handled_total", grpc_method="Read", grpc_code="OK")
        writes += sample(s, "fs3_dataport_updates_total", status="ok")
        reads += sample(s, "fs3_dataport_items_total", status="data")
        sent += sample(s, "fs3_dataport_sent_bytes_total")
        received += sample(s, "fs3_dataport_received_bytes_total")
        received += sample(s, "grpc_server_received_bytes_total", grpc_method="Update")
        assert sample(s, "grpc_server_handling_seconds_count", grpc_method="Update") == sample(
            s, "grpc_server_handled_total", grpc_method="Update"
        )
    assert writes >= 3 * 3  # 3 chunks of 1 MiB, each through its 3-target chain over the data ports
    assert reads >= 3  # the 3 chunks, over the data ports
    assert sent >= len(data)  # the data ports sent every byte read
    assert received >= 3 * len(
        data
    )  # every replica received every byte (head from the client, the rest forwarded)
    assert (
        grpc_updates >= 1 and grpc_reads >= 1
    )  # the gRPC-only client's write (forwarded over data ports) and read

    meta = scrape(cluster3.metrics_url("meta"))
    assert sample(meta, "grpc_server_handled_total", grpc_code="OK") > 0

    # mgmtd: target states and node liveness as it sees them now
    m = scrape(cluster3.metrics_url("mgmtd"))
    targets = cluster3.num_chains * cluster3.config.replicas
    assert sample(m, "fs3_targets", state="SERVING") == targets
    assert sample(m, "fs3_targets", state="OFFLINE") == 0
    assert sample(m, "fs3_nodes", role="storage", alive="true") == cluster3.config.num_storage
    assert sample(m, "grpc_server_handled_total", grpc_method="Heartbeat") > 0

    cluster3.kill_storage(0)
    cluster3.wait_for(
        lambda _routing: sample(scrape(cluster3.metrics_url("mgmtd")), "fs3_targets", state="OFFLINE") > 0,
        what="mgmtd to report storage-0's targets offline",
    )
    m = scrape(cluster3.metrics_url("mgmtd"))
    assert sample(m, "fs3_nodes", role="storage", alive="false") == 1
