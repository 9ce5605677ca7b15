"""Calls to the leading mgmtd of a group: every address is known, the leader is followed.

A standby answers ``UNAVAILABLE`` with ``ENOTLEADER: ...; leader is HOST:PORT``; the caller goes
there next, and tries every other address in turn when one is down or silent (a frozen leader),
so one call costs at most its timeout whatever the group's state. While instances answer but none
leads (a takeover under way) the call tries again until its timeout; when none answers at all it
fails as soon as each was tried. Thread-safe.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from typing import Any

import grpc

from fs3 import _rpc
from fs3.protos import mgmtd_pb2_grpc

NOT_LEADER = "ENOTLEADER"
_LEADER_HINT = re.compile(r"leader is (\S+:\d+)")
RETRY_S = 0.1  # pause between rounds while only standbys answer


def parse_addresses(addresses: str | Sequence[str]) -> list[str]:
    """``"h1:p1,h2:p2"`` (or a list of such strings) as a list of addresses; ValueError if none."""
    items = [addresses] if isinstance(addresses, str) else list(addresses)
    out = [a.strip() for item in items for a in item.split(",") if a.strip()]
    for a in out:
        host, _, port = a.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"mgmtd: {a!r} is not HOST:PORT")
    if not out:
        raise ValueError("mgmtd: at least one HOST:PORT is required")
    return list(dict.fromkeys(out))


class MgmtdClient:
    """The mgmtd group at ``addresses``; methods mirror ``MgmtdStub`` (``Heartbeat(req, timeout=)``...)."""

    def __init__(self, addresses: str | Sequence[str]) -> None:
        self.addresses = parse_addresses(addresses)
        # a channel pool of its own: a new client connects at once, never inheriting another channel's
        # reconnect back-off to an address that was down a moment ago
        options = [*_rpc.OPTIONS, ("grpc.use_local_subchannel_pool", 1)]
        self._channels = {a: grpc.insecure_channel(a, options=options) for a in self.addresses}
        self._stubs = {a: mgmtd_pb2_grpc.MgmtdStub(ch) for a, ch in self._channels.items()}
        self._lock = threading.Lock()
        self._leader = self.addresses[0]

    def close(self) -> None:
        """Close every channel."""
        for ch in self._channels.values():
            ch.close()

    @property
    def leader(self) -> str:
        """The address that answered as leader last (the first address before any call)."""
        return self._leader

    def call(self, method: str, request: Any, timeout: float = 10.0) -> Any:
        """Call ``method`` on the leader within ``timeout`` seconds; the last RpcError if none answers."""
        deadline = time.monotonic() + timeout
        # one address: all the time for it; several: a share each, so a silent one cannot eat it all
        share = timeout if len(self.addresses) == 1 else max(0.5, timeout / len(self.addresses))
        while True:
            found, rsp, last, standbys = self._one_round(method, request, deadline, share)
            if found:
                return rsp
            if not standbys or deadline - time.monotonic() < RETRY_S:
                break
            time.sleep(RETRY_S)  # only standbys answered: a takeover is under way, ask again
        if last is None:
            raise _Timeout(f"mgmtd {','.join(self.addresses)}: no answer within {timeout:.1f} s")
        raise last

    def _one_round(
        self, method: str, request: Any, deadline: float, share: float
    ) -> tuple[bool, Any, grpc.RpcError | None, bool]:
        """Each address once, the leader first: (answered, response, last error, a standby answered)."""
        with self._lock:
            order = [self._leader, *(a for a in self.addresses if a != self._leader)]
        last: grpc.RpcError | None = None
        standbys = False
        tried: set[str] = set()
        while order:
            addr = order.pop(0)
            if addr in tried:
                continue
            tried.add(addr)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                rsp = getattr(self._stubs[addr], method)(request, timeout=min(share, left))
            except grpc.RpcError as exc:
                code, details = exc.code(), exc.details() or ""
                if code == grpc.StatusCode.UNAVAILABLE and NOT_LEADER in details:
                    standbys = True
                    hint = _LEADER_HINT.search(details)
                    if hint and hint.group(1) in self._stubs and hint.group(1) not in tried:
                        order.insert(0, hint.group(1))
                    last = exc
                    continue
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    last = exc
                    continue
                raise
            with self._lock:
                self._leader = addr
            return True, rsp, None, standbys
        return False, None, last, standbys

    def Heartbeat(self, request: Any, timeout: float = 10.0) -> Any:
        """``Mgmtd.Heartbeat`` on the leader."""
        return self.call("Heartbeat", request, timeout)

    def GetRouting(self, request: Any, timeout: float = 10.0) -> Any:
        """``Mgmtd.GetRouting`` on the leader."""
        return self.call("GetRouting", request, timeout)

    def SetChainTable(self, request: Any, timeout: float = 30.0) -> Any:
        """``Mgmtd.SetChainTable`` on the leader."""
        return self.call("SetChainTable", request, timeout)

    def SyncDone(self, request: Any, timeout: float = 10.0) -> Any:
        """``Mgmtd.SyncDone`` on the leader."""
        return self.call("SyncDone", request, timeout)


class _Timeout(grpc.RpcError):
    """The deadline passed before any address could be tried."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self._message = message

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return self._message
