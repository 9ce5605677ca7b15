"""The in-job request port: a zmq ROUTER that ``haiplatform.job`` reaches via ``HAI_SUSPEND_ADDR``.

Every message is validated (size, JSON shape, field types and ranges, the run's token); a
malformed one is logged and answered with an error naming the field, and never ends the loop.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:
    from haiplatform.agent.agent import AgentConfig
    from haiplatform.agent.runs import Run

log = logging.getLogger("haiplatform.agent")

# Limits on what the in-job client may send (one small JSON object).
MAX_CLIENT_MESSAGE_BYTES = 4096
MAX_ZMQ_FRAME_BYTES = 65536  # libzmq drops a peer that sends a larger message


def parse_client_request(body: bytes) -> tuple[str, int, int, int, str]:
    """(op, job, seq, rank, token) of one in-job client message; ValueError names the bad field and limit."""
    if len(body) > MAX_CLIENT_MESSAGE_BYTES:
        raise ValueError(f"message: {len(body)} bytes, limit {MAX_CLIENT_MESSAGE_BYTES}")
    try:
        msg = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"message: not UTF-8 JSON ({exc})") from None
    except RecursionError:
        raise ValueError("message: JSON nested too deeply") from None
    if not isinstance(msg, dict):
        raise ValueError(f"message: must be a JSON object, got {type(msg).__name__}")
    extra = sorted(set(msg) - {"op", "job", "seq", "rank", "token"})
    if extra:
        raise ValueError(f"{extra[0]}: unknown field")
    op = msg.get("op")
    if op not in ("poll", "ready"):
        raise ValueError(f"op: must be 'poll' or 'ready', got {op!r:.40}")
    out = []
    for key, lo, hi in (("job", 1, 2**63 - 1), ("seq", 1, 2**32 - 1), ("rank", 0, 2**32 - 1)):
        val = msg.get(key)
        if isinstance(val, bool) or not isinstance(val, int):
            raise ValueError(f"{key}: must be an integer, got {type(val).__name__}")
        if not lo <= val <= hi:
            raise ValueError(f"{key}: {val} is outside {lo}..{hi}")
        out.append(val)
    token = msg.get("token", "")
    if not isinstance(token, str) or len(token) > 128:
        raise ValueError("token: must be a string of at most 128 characters")
    return op, out[0], out[1], out[2], token


class JobPort:
    """The agent's zmq ROUTER socket, bound at ``address``; ``serve()`` answers until ``stop`` is set."""

    def __init__(
        self,
        config: AgentConfig,
        runs: dict[tuple[int, int], Run],
        lock: threading.RLock,
        stop: threading.Event,
    ) -> None:
        self.config = config
        self.runs = runs
        self.lock = lock
        self.refused_messages = 0
        self._stop = stop
        self._zmq = zmq.Context()
        self._router = self._zmq.socket(zmq.ROUTER)
        self._router.linger = 0
        self._router.setsockopt(zmq.MAXMSGSIZE, MAX_ZMQ_FRAME_BYTES)
        port = self._router.bind_to_random_port(f"tcp://{config.host}")
        self.address = f"tcp://{config.host}:{port}"

    def serve(self) -> None:
        """Answer in-job clients; a malformed message is logged and refused, never fatal."""
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        while not self._stop.is_set():
            try:
                if not poller.poll(200):
                    continue
                frames = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                continue
            except zmq.ZMQError as exc:
                log.warning("zmq receive failed: %s", exc)
                continue
            try:
                # A REQ client sends [identity, b"", body] through this ROUTER.
                if len(frames) != 3 or frames[1] != b"":
                    self._refuse(f"envelope: {len(frames)} frames, expected a REQ message")
                    continue
                try:
                    answer = self._client_request(*parse_client_request(frames[2]))
                except ValueError as exc:
                    self._refuse(str(exc))
                    answer = {"error": str(exc)}
                self._router.send_multipart([frames[0], b"", json.dumps(answer).encode()], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                log.warning("zmq reply failed: %s", exc)
            except Exception:  # keep serving whatever one request did
                log.exception("in-job client request failed")
        self._router.close()

    def _refuse(self, why: str) -> None:
        self.refused_messages += 1
        if self.refused_messages <= 20 or self.refused_messages % 1000 == 0:
            log.warning("refused in-job client message (%d so far): %s", self.refused_messages, why)

    def _client_request(self, op: str, job: int, seq: int, rank: int, token: str) -> dict:
        with self.lock:
            run = self.runs.get((job, seq))
            if run is None:
                return {"error": f"job {job} run {seq} is not running on {self.config.node_name}"}
            if not hmac.compare_digest(token.encode(), run.token.encode()):
                raise ValueError(f"token: not the HAI_RUN_TOKEN of job {job} run {seq}")
            if rank not in run.ranks:
                raise ValueError(f"rank: job {job} run {seq} has no rank {rank} on {self.config.node_name}")
            if op == "poll":
                # Only rank 0 sees the command (HAI-Platform: "seen only by rank 0").
                return {"suspend": run.suspend_requested and rank == 0}
            log.info("job %d run %d: rank %d called go_suspend()", job, seq, rank)
            run.suspend_ready = True
            run.stop(run.term_s, "the job called go_suspend()")
            return {"ok": True}

    # -- health -------------------------------------------------------------------------------
