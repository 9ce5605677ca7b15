"""Start-up of a job: who is on which node, and an allgather used only while the communicator is built.

Three sources, tried in order: an initialised ``torch.distributed`` default group (its
``all_gather_object``: a job that called ``init_process_group`` already holds ``MASTER_PORT`` with
torch's store, so HFReduce must not listen there too); ``mpirun`` (``OMPI_COMM_WORLD_RANK``/``PMI_RANK``
set and mpi4py importable; MPI is used for nothing but this exchange); and env vars (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, and ``HFREDUCE_MASTER_PORT`` or else ``MASTER_PORT``) with a tiny TCP
rendezvous served by rank 0. A caller may instead hand ``init(exchange=...)`` its own, e.g. a
``StoreExchange`` over the store torch gives a backend's creator.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from ffcommon.config import env_int
from hfreduce.errors import CollectiveTimeoutError, HFReduceError, UsageError


@dataclass
class Topology:
    """Where this rank sits: its node (a group of ranks sharing one shared-memory segment) and the leaders."""

    rank: int
    world_size: int
    node: int
    num_nodes: int
    local_rank: int
    local_ranks: list[int] = field(default_factory=list)  # global ranks of this node, in order
    node_leaders: list[int] = field(default_factory=list)  # global rank of each node's local rank 0

    @property
    def local_size(self) -> int:
        return len(self.local_ranks)


def group_nodes(keys: list[str]) -> list[list[int]]:
    """Ranks grouped by node key, nodes ordered by their lowest rank."""
    nodes: dict[str, list[int]] = {}
    for rank, key in enumerate(keys):
        nodes.setdefault(key, []).append(rank)
    return sorted(nodes.values(), key=lambda rs: rs[0])


def node_key(rank: int, hostname: str) -> str:
    """The grouping key of ``rank``: HFREDUCE_LOCAL_WORLD_SIZE blocks, HFREDUCE_NODE_ID, or the hostname."""
    lws = os.environ.get("HFREDUCE_LOCAL_WORLD_SIZE")
    if lws:
        try:
            n = int(lws)
        except ValueError as exc:
            raise UsageError(f"HFREDUCE_LOCAL_WORLD_SIZE={lws!r} is not an integer") from exc
        if n < 1:
            raise UsageError(f"HFREDUCE_LOCAL_WORLD_SIZE={n} must be >= 1")
        return f"block-{rank // n}"
    return os.environ.get("HFREDUCE_NODE_ID") or f"host-{hostname}"


def topology_from_keys(rank: int, keys: list[str]) -> Topology:
    """Builds this rank's Topology from every rank's node key."""
    nodes = group_nodes(keys)
    for node, members in enumerate(nodes):
        if rank in members:
            return Topology(
                rank=rank,
                world_size=len(keys),
                node=node,
                num_nodes=len(nodes),
                local_rank=members.index(rank),
                local_ranks=members,
                node_leaders=[m[0] for m in nodes],
            )
    raise HFReduceError(f"rank {rank} is in no node")  # unreachable


class Exchange:
    """An allgather of small JSON values among all ranks, alive only during start-up."""

    rank: int
    world_size: int

    def allgather(self, value: Any) -> list[Any]:
        raise NotImplementedError

    def my_address(self) -> str:
        """An address of this host that the other nodes can reach."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the rendezvous (sockets, ports)."""


class MpiExchange(Exchange):
    """Allgather through mpi4py's COMM_WORLD (used under mpirun)."""

    def __init__(self) -> None:
        from mpi4py import MPI

        self._comm = MPI.COMM_WORLD
        self.rank = self._comm.Get_rank()
        self.world_size = self._comm.Get_size()

    def allgather(self, value: Any) -> list[Any]:
        return self._comm.allgather(value)

    def my_address(self) -> str:
        return _address_by_hostname(self)


def _address_by_hostname(ex: Exchange) -> str:
    """Loopback when every rank shares this hostname, else what the hostname resolves to."""
    hosts = set(ex.allgather(socket.gethostname()))
    if len(hosts) == 1:
        return "127.0.0.1"
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class TorchExchange(Exchange):
    """Allgather through the initialised ``torch.distributed`` default process group."""

    def __init__(self) -> None:
        import torch.distributed as dist

        self._dist = dist
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()

    def allgather(self, value: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        try:
            self._dist.all_gather_object(out, value)
        except RuntimeError as exc:
            raise CollectiveTimeoutError(
                f"hfreduce init: rank {self.rank}: torch.distributed allgather failed ({exc})"
            ) from exc
        return out

    def my_address(self) -> str:
        return _address_by_hostname(self)


class StoreExchange(Exchange):
    """Allgather through a ``torch.distributed`` key-value store (the one ``init_process_group`` hands a
    backend's creator, whose TCPStore already holds MASTER_PORT): each round every rank sets its key."""

    def __init__(self, store: Any, rank: int, world_size: int, timeout_s: float = 60.0) -> None:
        self._store = store
        self.rank, self.world_size = rank, world_size
        self._timeout_s = timeout_s
        self._round = 0

    def allgather(self, value: Any) -> list[Any]:
        import datetime

        prefix = f"hfreduce/allgather/{self._round}/"
        self._round += 1
        self._store.set(prefix + str(self.rank), json.dumps(value))
        keys = [prefix + str(r) for r in range(self.world_size)]
        try:
            self._store.wait(keys, datetime.timedelta(seconds=self._timeout_s))
        except RuntimeError as exc:
            missing = [r for r, k in enumerate(keys) if not self._store.check([k])]
            raise CollectiveTimeoutError(
                f"hfreduce init: rank {self.rank}: ranks {missing} did not reach the store rendezvous "
                f"within {self._timeout_s:g} s ({exc})"
            ) from exc
        return [json.loads(self._store.get(k)) for k in keys]

    def my_address(self) -> str:
        return _address_by_hostname(self)


def _torch_group_ready() -> bool:
    """True when this process already imported torch and initialised its default process group."""
    import sys

    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def _send_msg(sock: socket.socket, value: Any) -> None:
    data = json.dumps(value).encode()
    sock.sendall(struct.pack("!I", len(data)) + data)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        part = sock.recv(n - len(buf))
        if not part:
            raise ConnectionError("rendezvous peer closed the connection")
        buf += part
    return bytes(buf)


def _recv_msg(sock: socket.socket) -> Any:
    (n,) = struct.unpack("!I", _recv_exact(sock, 4))
    return json.loads(_recv_exact(sock, n))


class TcpExchange(Exchange):
    """Rank 0 serves a rendezvous on MASTER_ADDR:MASTER_PORT; every other rank keeps one connection to it."""

    def __init__(
        self, rank: int, world_size: int, master_addr: str, master_port: int, timeout_s: float
    ) -> None:
        self.rank, self.world_size = rank, world_size
        self._timeout_s = timeout_s
        self._master_addr = master_addr
        self._conns: dict[int, socket.socket] = {}
        self._sock: socket.socket | None = None
        deadline = time.monotonic() + timeout_s
        if rank == 0:
            srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                srv.bind((master_addr, master_port))
            except OSError as exc:
                raise UsageError(
                    f"rank 0 cannot listen on MASTER_ADDR:MASTER_PORT {master_addr}:{master_port}: {exc}"
                ) from exc
            srv.listen(world_size)
            try:
                while len(self._conns) < world_size - 1:
                    srv.settimeout(max(0.01, deadline - time.monotonic()))
                    try:
                        conn, _ = srv.accept()
                    except TimeoutError as exc:  # socket.timeout
                        missing = sorted(set(range(1, world_size)) - set(self._conns))
                        raise CollectiveTimeoutError(
                            f"hfreduce init: ranks {missing} never reached the rendezvous at {master_addr}:{master_port} "
                            f"within {timeout_s:g} s"
                        ) from exc
                    conn.settimeout(timeout_s)
                    hello = _recv_msg(conn)
                    if hello.get("world_size") != world_size:
                        raise UsageError(
                            f"rank {hello.get('rank')} says WORLD_SIZE={hello.get('world_size')} but rank 0 has {world_size}"
                        )
                    self._conns[int(hello["rank"])] = conn
            finally:
                srv.close()
        else:
            while True:
                try:
                    sock = socket.create_connection((master_addr, master_port), timeout=1.0)
                    break
                except OSError as exc:
                    if time.monotonic() > deadline:
                        raise CollectiveTimeoutError(
                            f"hfreduce init: rank {rank} could not reach rank 0 at {master_addr}:{master_port} "
                            f"within {timeout_s:g} s ({exc})"
                        ) from exc
                    time.sleep(0.05)
            sock.settimeout(timeout_s)
            _send_msg(sock, {"rank": rank, "world_size": world_size})
            self._sock = sock

    def allgather(self, value: Any) -> list[Any]:
        try:
            if self.rank == 0:
                values = [value] + [None] * (self.world_size - 1)
                for r, conn in self._conns.items():
                    values[r] = _recv_msg(conn)
                for conn in self._conns.values():
                    _send_msg(conn, values)
                return values
            assert self._sock is not None
            _send_msg(self._sock, value)
            return _recv_msg(self._sock)
        except (OSError, ConnectionError) as exc:
            raise CollectiveTimeoutError(
                f"hfreduce init: rank {self.rank}: rendezvous failed ({exc}); a rank died during start-up"
            ) from exc

    def my_address(self) -> str:
        if self._sock is not None:
            return self._sock.getsockname()[0]
        try:
            return socket.gethostbyname(self._master_addr)
        except OSError:
            return "127.0.0.1"

    def close(self) -> None:
        for conn in self._conns.values():
            conn.close()
        if self._sock is not None:
            self._sock.close()


def make_exchange(timeout_s: float) -> Exchange:
    """The exchange for this process: torch.distributed's, else mpirun's, else env vars, else a 1-rank job."""
    if _torch_group_ready():
        return TorchExchange()
    under_mpirun = any(k in os.environ for k in ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"))
    if under_mpirun:
        try:
            return MpiExchange()
        except ImportError as exc:
            if "RANK" not in os.environ:
                raise UsageError(
                    "started by mpirun but mpi4py is not importable; set RANK/WORLD_SIZE/MASTER_* instead"
                ) from exc
    rank, world = env_int("RANK", error=UsageError), env_int("WORLD_SIZE", error=UsageError)
    if rank is not None and world is not None:
        if not 0 <= rank < world:
            raise UsageError(f"RANK={rank} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
        if world == 1:
            return _SingleExchange()
        addr = os.environ.get("MASTER_ADDR")
        port = env_int("HFREDUCE_MASTER_PORT", error=UsageError)
        if port is None:
            port = env_int("MASTER_PORT", error=UsageError)
        if not addr or port is None:
            raise UsageError("RANK and WORLD_SIZE are set but MASTER_ADDR/MASTER_PORT are not")
        return TcpExchange(rank, world, addr, port, timeout_s)
    return _SingleExchange()


class _SingleExchange(Exchange):
    """A job of one rank (a plain ``python script.py``)."""

    rank = 0
    world_size = 1

    def allgather(self, value: Any) -> list[Any]:
        return [value]

    def my_address(self) -> str:
        return "127.0.0.1"
