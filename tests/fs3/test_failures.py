"""Failure handling with real processes: SIGKILL mid-write, resync, corrupted chunks, restarts."""

from __future__ import annotations

import hashlib
import os
import threading
import time

from fs3.protos import common_pb2 as cpb

S = cpb.TargetState


def all_serving(routing) -> bool:
    return all(t.state == S.SERVING for ch in routing.chains for t in ch.targets)


def chunk_files(cluster, target_id: int) -> dict[str, str]:
    """{relative chunk path: sha256} of one target's committed chunk files."""
    root = cluster.target_dir(target_id) / "chunks"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.glob("*/*"))
        if not p.name.endswith(".p")
    }


def assert_replicas_identical(cluster) -> int:
    routing = cluster.routing()
    n = 0
    for ch in routing.chains:
        views = [chunk_files(cluster, t.target_id) for t in ch.targets]
        assert all(v == views[0] for v in views[1:]), f"chain {ch.chain_id} replicas differ"
        n += len(views[0])
    return n


def test_kill_storage_mid_write_then_resync_byte_identical(cluster3):
    cl = cluster3.client(timeout_s=60)
    piece = 512 << 10
    pieces = [os.urandom(piece) for _ in range(40)]  # 20 MiB in 0.5 MiB writes
    acked: list[int] = []
    errors: list[BaseException] = []

    def writer(path: str, blobs: list[bytes], acked: list[int]) -> None:
        try:
            with cl.open(path, "wb") as f:
                for i, b in enumerate(blobs):
                    f.pwrite(b, i * piece)
                    acked.append(i)
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    t = threading.Thread(target=writer, args=("/big", pieces, acked))
    t.start()
    while len(acked) < 6 and t.is_alive():
        time.sleep(0.01)
    cluster3.kill_storage(1)  # head of chain 2, middle of chain 1, tail of chain 3
    killed_at = len(acked)
    t.join(timeout=120)
    assert not errors, errors
    assert killed_at < len(pieces), "the write finished before the kill; nothing was tested"
    # every acknowledged write is readable and correct from the surviving replicas
    routing = cluster3.wait_for(
        lambda r: all(t.state != S.SERVING for ch in r.chains for t in ch.targets if t.node_id == 10002),
        what="killed node's targets leave the serving set",
    )
    assert all(ch.targets[0].node_id != 10002 for ch in routing.chains)
    with cl.open("/big", "rb") as f:
        for i in acked:
            assert f.pread(piece, i * piece) == pieces[i], f"acknowledged piece {i} lost"

    # the killed server rejoins; writes continue while it resyncs
    cluster3.start_storage(1)
    more = [os.urandom(piece) for _ in range(10)]
    acked2: list[int] = []
    t2 = threading.Thread(target=writer, args=("/during-resync", more, acked2))
    t2.start()
    t2.join(timeout=120)
    assert not errors, errors
    cluster3.wait_for(all_serving, timeout_s=90, what="all targets serving again")
    assert cl.read_bytes("/big") == b"".join(pieces)
    assert cl.read_bytes("/during-resync") == b"".join(more)
    assert assert_replicas_identical(cluster3) > 0
    assert (
        "resynced target"
        in cluster3.launcher.procs["storage-0"].log_text() + cluster3.launcher.procs["storage-2"].log_text()
    )


def test_corrupted_chunk_is_detected_and_read_from_another_replica(cluster3):
    cl = cluster3.client()
    data = os.urandom(3 * (256 << 10))
    cl.write_bytes("/c", data)
    st = cl.stat("/c")
    chain_id = st.chains[0]  # chunk 0 lives on the file's first chain
    chain = next(ch for ch in cl.refresh_routing().chains if ch.chain_id == chain_id)
    victim = chain.targets[0].target_id
    path = cluster3.target_dir(victim) / "chunks" / f"{st.st_ino:016x}" / f"{0:08x}"
    raw = bytearray(path.read_bytes())
    raw[1000] ^= 0xFF
    path.write_bytes(bytes(raw))
    for _ in range(4):  # reads rotate over replicas; every one must be correct
        assert cl.read_bytes("/c") == data
    assert any(f"target {victim}" in r for r in cl.stats.corrupt_reads), cl.stats.corrupt_reads
    logs = "".join(p.log_text() for name, p in cluster3.launcher.procs.items() if name.startswith("storage"))
    assert "fails its checksum" in logs


def test_client_times_out_on_a_dead_chain_instead_of_hanging(cluster3):
    cl = cluster3.client(timeout_s=3)
    cl.write_bytes("/x", b"before")
    for i in range(3):
        cluster3.kill_storage(i)
    t0 = time.monotonic()
    try:
        cl.read_bytes("/x")
    except TimeoutError as exc:
        assert "chain" in str(exc)
    else:
        raise AssertionError("read from a dead cluster succeeded")
    assert time.monotonic() - t0 < 30


def test_restarted_cluster_keeps_data_and_chain_table(cluster3):
    cl = cluster3.client()
    data = os.urandom(1 << 20)
    cl.write_bytes("/persist", data)
    versions = {ch.chain_id: ch.version for ch in cluster3.routing().chains}
    cluster3.launcher.stop_all(grace_s=3)
    cluster3.start()  # mgmtd, meta and storage reopen their databases and data dirs
    r = cluster3.routing()
    assert {ch.chain_id for ch in r.chains} == set(versions)
    assert all(ch.version >= versions[ch.chain_id] for ch in r.chains)
    assert cluster3.client().read_bytes("/persist") == data
