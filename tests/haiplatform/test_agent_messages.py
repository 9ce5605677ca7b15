"""The agent validates what reaches its zmq port: garbage, wrong types and huge frames are logged and
refused with an error naming the field, no thread dies, and a real suspend still works afterwards."""

from __future__ import annotations

import json
import socket
import sys
import uuid
from pathlib import Path

import grpc
import pytest
import zmq
from hai_helpers import log_so_far, processes_with_env, wait_for

SUSPEND_JOB = Path(__file__).resolve().parent / "suspend_job.py"


def _ask(ctx: zmq.Context, addr: str, body: bytes, timeout_ms: int = 5000) -> dict:
    """One REQ round trip; the agent must answer within the timeout."""
    s = ctx.socket(zmq.REQ)
    s.linger = 0
    s.connect(addr)
    try:
        s.send(body)
        assert s.poll(timeout_ms), f"no answer to {body[:60]!r}"
        return json.loads(s.recv())
    finally:
        s.close()


def test_malformed_zmq_messages_are_refused_and_suspend_still_works(cluster_factory, tmp_path):
    c = cluster_factory(["n1"])
    mark = uuid.uuid4().hex
    job = c.admin.submit(
        {
            "command": f"{sys.executable} {SUSPEND_JOB}",
            "workdir": str(tmp_path),
            "env": {"HAI_TEST_MARK": mark},
        }
    )
    wait_for(lambda: b"polling" in log_so_far(c.admin, job), 30, "the job to poll")
    env = next(iter(processes_with_env("HAI_TEST_MARK", mark).values()))
    addr, seq = env["HAI_SUSPEND_ADDR"], int(env["HAI_RUN_SEQ"])
    host, port = addr.removeprefix("tcp://").split(":")

    # Not ZMTP at all: raw bytes and an HTTP request on the port.
    for junk in (b"\x00" * 64, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", bytes(range(256)) * 64):
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(junk)
    ctx = zmq.Context()
    try:
        ok = {"op": "poll", "job": job, "seq": seq, "rank": 0, "token": env["HAI_RUN_TOKEN"]}
        cases = [
            (b"not json", "message: not UTF-8 JSON"),
            (b"\xff\xfe", "message: not UTF-8 JSON"),
            (b"[1, 2]", "message: must be a JSON object"),
            (b"[" * 3000, "message: "),  # nesting deeper than the JSON parser recurses
            (json.dumps({**ok, "job": "1"}).encode(), "job: must be an integer"),
            (json.dumps({**ok, "seq": True}).encode(), "seq: must be an integer"),
            (json.dumps({**ok, "rank": 2**70}).encode(), "rank: "),
            (json.dumps({**ok, "rank": 7}).encode(), "rank: job"),
            (json.dumps({**ok, "op": "nuke"}).encode(), "op: must be"),
            (json.dumps({**ok, "extra": 1}).encode(), "extra: unknown field"),
            (json.dumps({**ok, "token": "guess"}).encode(), "token: not the HAI_RUN_TOKEN"),
            (json.dumps({**ok, "op": "ready", "token": ""}).encode(), "token: not the HAI_RUN_TOKEN"),
            (json.dumps({**ok, "token": 7}).encode(), "token: must be a string"),
            (json.dumps({"op": "poll"}).encode(), "job: must be an integer"),
            (b" " * 10_000, "message: 10000 bytes, limit 4096"),
        ]
        for body, message in cases:
            answer = _ask(ctx, addr, body)
            assert message in answer.get("error", ""), (body[:40], answer)
        # Wrong envelopes (no REQ delimiter, many frames) and a frame over the size limit: dropped.
        dealer = ctx.socket(zmq.DEALER)
        dealer.linger = 0
        dealer.connect(addr)
        dealer.send_multipart([b"a", b"b", b"c", b"d"])
        dealer.send(b"x" * (10 << 20))
        dealer.close()
        # A client that asks and goes away without reading the answer.
        gone = ctx.socket(zmq.REQ)
        gone.linger = 0
        gone.connect(addr)
        gone.send(json.dumps(ok).encode())
        gone.close()
        # Still serving: a well-formed poll is answered.
        assert _ask(ctx, addr, json.dumps(ok).encode()) == {"suspend": False}
    finally:
        ctx.term()

    c.admin.suspend(job)
    info = c.admin.wait(job, ("suspended",), timeout_s=30)
    assert "called go_suspend()" in info.reason, info.reason
    assert b"suspending" in c.admin.tail_log(job, 0, 0, 1 << 20).data
    agent_log = c.launcher.procs["agent-n1"].log_text()
    assert "refused in-job client message" in agent_log and "Traceback" not in agent_log


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"node": ""}, "node: "),
        ({"node": "../../etc"}, "node: "),
        ({"node": "n" * 300}, "node: "),
        ({"slots": 0}, "slots: 0 is outside 1..4096"),
        ({"spare_ports": [70000]}, "spare_ports: "),
        ({"health_reason": "x" * 5000}, "health_reason: over the limit of 4096"),
        ({"agent_started_at": float("nan")}, "agent_started_at: "),
        ({"ranks": [{"job_id": 0, "run_seq": 1}]}, "ranks[0]: job_id and run_seq must be positive"),
    ],
)
def test_scheduler_refuses_malformed_heartbeats(cluster_factory, fields, message):
    from haiplatform.protos import agent_pb2, agent_pb2_grpc

    c = cluster_factory([])
    base = {"node": "n9", "slots": 8, "agent_started_at": 1.0}
    req = agent_pb2.HeartbeatRequest(**{**base, **fields})
    with grpc.insecure_channel(c.address) as ch:
        stub = agent_pb2_grpc.AgentControlStub(ch)
        md = (("authorization", f"Bearer {c.token}"),)
        with pytest.raises(grpc.RpcError) as exc:
            stub.Heartbeat(req, metadata=md, timeout=10)
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in exc.value.details()
        # Bytes that are no HeartbeatRequest at all: refused, and the scheduler keeps serving.
        raw = ch.unary_unary("/haiplatform.AgentControl/Heartbeat")
        with pytest.raises(grpc.RpcError):
            raw(b"\xff\xff\xff\xff\x0f", metadata=md, timeout=10)
        stub.Heartbeat(agent_pb2.HeartbeatRequest(**base), metadata=md, timeout=10)
    assert "n9" in {n.name for n in c.admin.nodes()}
    assert all(n.name in ("n9",) for n in c.admin.nodes())


@pytest.mark.parametrize(
    ("max_bytes", "ok"), [(1 << 20, True), (4_000_000, True), (4_000_001, False), (2**32 - 1, False)]
)
def test_log_reads_over_the_limit_are_refused(cluster_factory, tmp_path, max_bytes, ok):
    from haiplatform import errors

    c = cluster_factory(["n1"])
    job = c.admin.submit({"command": "echo hello", "workdir": str(tmp_path)})
    assert c.admin.wait(job).state == "completed"
    if ok:
        assert b"hello" in c.admin.tail_log(job, 0, 0, max_bytes).data
    else:
        with pytest.raises(errors.HaiError, match="max_bytes: .* over the limit of 4000000"):
            c.admin.tail_log(job, 0, 0, max_bytes)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"ranks": []}, "ranks: empty"),
        ({"command": "", "argv": []}, "command/argv: both empty"),
        ({"argv": ["", "x"]}, "argv[0]: empty"),
        ({"argv": ["echo", "a\0b"]}, "argv[1]: contains a NUL byte"),
        ({"workdir": "relative"}, "workdir: must be an absolute path"),
        ({"env": {"A=B": "1"}}, "env: 'A=B' is not a valid variable"),
        ({"term_s": float("inf")}, "term_s: "),
        ({}, ""),
    ],
)
def test_agent_refuses_malformed_start_orders(fields, message):
    from haiplatform.agent.runs import check_start
    from haiplatform.protos import agent_pb2

    base = {"job_id": 1, "run_seq": 1, "command": "true", "workdir": "/", "ranks": [0]}
    got = check_start(agent_pb2.StartRun(**{**base, **fields}))
    assert got.startswith(message) and bool(got) == bool(message), got


def test_scheduler_survives_junk_and_oversized_messages(cluster_factory):
    from haiplatform.protos import agent_pb2, agent_pb2_grpc

    c = cluster_factory([])
    for junk in (
        b"\x00" * 64,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 512,
    ):
        with socket.create_connection(("127.0.0.1", c.port), timeout=5) as raw:
            raw.sendall(junk)
    md = (("authorization", f"Bearer {c.token}"),)
    with grpc.insecure_channel(c.address) as ch:
        stub = agent_pb2_grpc.AgentControlStub(ch)
        huge = agent_pb2.HeartbeatRequest(
            node="n9", slots=8, agent_started_at=1.0, health_reason="x" * (5 << 20)
        )
        with pytest.raises(grpc.RpcError) as exc:
            stub.Heartbeat(huge, metadata=md, timeout=10)
        assert exc.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        stub.Heartbeat(
            agent_pb2.HeartbeatRequest(node="n9", slots=8, agent_started_at=1.0), metadata=md, timeout=10
        )
    assert [n.name for n in c.admin.nodes()] == ["n9"]
