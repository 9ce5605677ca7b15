"""In-job API: rank 0 polls for the scheduler's suspend command; any rank may then call ``go_suspend``.

Usage inside a training loop (the HAI-Platform protocol)::

    if haiplatform.job.receive_suspend_command():
        save_checkpoint()
        haiplatform.job.go_suspend()   # never returns

Talks to the node agent over pyzmq at ``HAI_SUSPEND_ADDR`` (set by the agent in every rank's env).
"""

from __future__ import annotations

import json
import os
import time
from typing import NoReturn

import zmq

from haiplatform.errors import NotInJob, SchedulerUnavailable

_socket: zmq.Socket | None = None
_ctx: zmq.Context | None = None


def _job_env() -> tuple[str, int, int, int]:
    try:
        return (
            os.environ["HAI_SUSPEND_ADDR"],
            int(os.environ["HAI_JOB_ID"]),
            int(os.environ["HAI_RUN_SEQ"]),
            int(os.environ.get("RANK", "0")),
        )
    except KeyError as exc:
        raise NotInJob(f"{exc.args[0]} is not set: not running inside a HAI-Platform job") from None


def _request(msg: dict, timeout_s: float) -> dict:
    """One REQ/REP round trip to the agent; a dead agent gives SchedulerUnavailable, not a hang."""
    global _socket, _ctx
    addr = _job_env()[0]
    if _socket is None:
        _ctx = _ctx or zmq.Context.instance()
        _socket = _ctx.socket(zmq.REQ)
        _socket.linger = 0
        _socket.connect(addr)
    # The run's secret, set by the agent: only this run's own processes may speak for it.
    msg = {**msg, "token": os.environ.get("HAI_RUN_TOKEN", "")}
    _socket.send(json.dumps(msg).encode())
    if not _socket.poll(int(timeout_s * 1000)):
        _socket.close()  # a REQ socket without its reply cannot send again
        _socket = None
        raise SchedulerUnavailable(f"node agent at {addr} did not answer within {timeout_s} s")
    return json.loads(_socket.recv())


def receive_suspend_command(timeout_s: float = 2.0) -> bool:
    """Whether the scheduler asked this job to suspend. True only on rank 0; cheap enough per step."""
    _addr, job, seq, rank = _job_env()
    try:
        answer = _request({"op": "poll", "job": job, "seq": seq, "rank": rank}, timeout_s)
    except SchedulerUnavailable:
        return False
    return bool(answer.get("suspend", False))


def go_suspend(timeout_s: float = 10.0) -> NoReturn:
    """Tell the agent this job is checkpointed and may be stopped; blocks until it is (never returns)."""
    _addr, job, seq, rank = _job_env()
    answer = _request({"op": "ready", "job": job, "seq": seq, "rank": rank}, timeout_s)
    if "error" in answer:
        raise SchedulerUnavailable(answer["error"])
    while True:  # the agent stops this process group now
        time.sleep(3600)
