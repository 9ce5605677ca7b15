"""Chunk I/O of the fs3 client: reads and writes straight to the storage chains, many at once.

Writes go to the chain's head and are acknowledged once the chain committed them, retried across
failovers; reads go to a serving replica (hashed per chunk, the tail on retry), batched per storage
node, read around corrupt replicas. Each storage node is reached over its data port when it has
one, else gRPC (whose chunk replies are decoded by hand, see ``fs3.wire``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc

from fs3 import _rpc, errors, wire
from fs3.client.dataport import DataPortPool, PartialRead, ReadRequest
from fs3.client.routing import RoutingCache
from fs3.client.types import ClientStats
from fs3.crc import crc32c
from fs3.protos import common_pb2, storage_pb2, storage_pb2_grpc
from fs3.protos.common_pb2 import TargetState

# A chunk span of one read: (chunk index, offset in the chunk, length, offset in the caller's buffer).
Span = tuple[int, int, int, int]
BATCH_MAX_ITEMS = 32  # chunks per BatchRead RPC
BATCH_MAX_BYTES = 64 << 20  # bytes requested per BatchRead RPC


class ChunkIO:
    """Chunk reads/writes of one client on an I/O thread pool; safe to share between threads."""

    def __init__(
        self,
        routing: RoutingCache,
        stats: ClientStats,
        timeout_s: float,
        io_threads: int = 16,
        verify_reads: bool = True,
        use_data_port: bool = True,
    ) -> None:
        self.routing = routing
        self.stats = stats
        self.timeout_s = timeout_s
        self.use_data_port = (
            use_data_port  # chunk reads and writes over storage data ports (False: gRPC only)
        )
        self._stubs: dict[
            str,
            tuple[
                storage_pb2_grpc.StorageStub, Callable[..., Iterator[bytes]], Callable[..., Iterator[bytes]]
            ],
        ] = {}
        self._stubs_lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=io_threads, thread_name_prefix="fs3-io")
        self._data = DataPortPool(timeout_s, per_address=io_threads, verify=verify_reads)

    def close(self) -> None:
        """Wait for running I/O, then release the pool and the data-port connections."""
        self._pool.shutdown(wait=True)
        self._data.close()

    # ---- peers -------------------------------------------------------------------------------
    def _data_address(self, node_id: int) -> str:
        """The node's data port ("" when it has none, or the client was told not to use them)."""
        node = self.routing.node(node_id) if self.use_data_port else None
        return node.data_address if node is not None else ""

    def stub(self, node_id: int) -> storage_pb2_grpc.StorageStub:
        """The gRPC stub of storage node ``node_id`` (one channel per address)."""
        return self._storage(node_id)[0]

    def _raw_read(self, node_id: int) -> Callable[..., Iterator[bytes]]:
        """``Storage/Read`` whose replies stay serialized: ``read_chunk`` takes the payload out uncopied."""
        return self._storage(node_id)[1]

    def _raw_batch_read(self, node_id: int) -> Callable[..., Iterator[bytes]]:
        """``Storage/BatchRead`` whose replies stay serialized (decoded by ``wire.parse_batch_read_rsp``)."""
        return self._storage(node_id)[2]

    def _storage(
        self, node_id: int
    ) -> tuple[storage_pb2_grpc.StorageStub, Callable[..., Iterator[bytes]], Callable[..., Iterator[bytes]]]:
        addr = self.routing.address(node_id)
        with self._stubs_lock:
            entry = self._stubs.get(addr)
            if entry is None:
                ch = _rpc.channel(addr)
                raw = ch.unary_stream(
                    "/fs3.Storage/Read", request_serializer=storage_pb2.ReadReq.SerializeToString
                )
                batch = ch.unary_stream(
                    "/fs3.Storage/BatchRead", request_serializer=storage_pb2.BatchReadReq.SerializeToString
                )
                entry = self._stubs[addr] = (storage_pb2_grpc.StorageStub(ch), raw, batch)
            return entry

    # ---- chunks ------------------------------------------------------------------------------
    @staticmethod
    def _chain_for(ino: common_pb2.Inode, index: int) -> int:
        lay = ino.layout
        return lay.chains[index % len(lay.chains)]

    def write_chunk(self, ino: common_pb2.Inode, index: int, offset: int, data: bytes | memoryview) -> None:
        """Write ``data`` at ``offset`` of chunk ``index`` through the chain's head; retries across failovers."""
        cs = ino.layout.chunk_size
        end = index * cs + offset + len(data)
        if end > self.routing.max_file_size():
            raise errors.FileTooLarge(
                f"inode {ino.inode_id}", f"write ends at {end} > max file size {self.routing.max_file_size()}"
            )
        chain_id = self._chain_for(ino, index)
        crc = crc32c(data)
        deadline = time.monotonic() + self.timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            chain = self.routing.chain(chain_id)
            head = chain.targets[0] if chain.targets else None
            if head is None or head.state != TargetState.SERVING:
                last = errors.NotServing(f"chain {chain_id}", "no serving head")
                self.routing.wait_new(chain_id, chain.version)
                continue
            header = storage_pb2.UpdateReq(
                chain_id=chain_id,
                chain_version=chain.version,
                target_id=head.target_id,
                chunk=storage_pb2.ChunkId(inode_id=ino.inode_id, index=index),
                type=storage_pb2.WRITE,
                offset=offset,
                length=len(data),
                chunk_size=cs,
                payload_crc32c=crc,
                from_client=True,
                max_file_size=self.routing.max_file_size(),
            )
            try:
                self._send_update(
                    head.node_id, header, data, f"chain {chain_id} head target {head.target_id}"
                )
                return
            except errors.FS3Error as exc:
                err = exc
            if isinstance(
                err,
                errors.StaleChainVersion
                | errors.NotServing
                | errors.ClusterTimeout
                | errors.NotFound
                | errors.IOFailure,
            ):
                last = err
                self.stats.write_retries += 1
                self.routing.wait_new(chain_id, chain.version)
                continue
            raise err
        raise errors.ClusterTimeout(
            f"chain {chain_id}", f"write not acknowledged within {self.timeout_s:.0f} s: {last}"
        )

    def _send_update(
        self, node_id: int, header: storage_pb2.UpdateReq, data: bytes | memoryview, what: str
    ) -> None:
        """One chunk update to ``node_id``, acknowledged once its chain committed it (data port or gRPC).

        Raises the FS3Error the node answered, ClusterTimeout when it could not be reached.
        """
        address = self._data_address(node_id)
        if address:
            self._data.update(address, header, data, what)
            self.stats.data_port_updates += 1
            return
        try:
            self.stub(node_id).Update(wire.update_pieces(header, data), timeout=self.timeout_s)
        except grpc.RpcError as exc:
            raise errors.from_rpc_error(exc, what) from None

    def read_chunk(self, ino: common_pb2.Inode, index: int, offset: int, length: int, out: memoryview) -> int:
        """Read ``length`` bytes at ``offset`` of chunk ``index`` into ``out``; returns bytes found (rest zero)."""
        chain_id = self._chain_for(ino, index)
        deadline = time.monotonic() + self.timeout_s
        attempt = 0
        relaxed = False
        last: Exception | None = None
        all_corrupt_passes = 0  # passes in a row in which every serving replica failed its checksum
        while time.monotonic() < deadline:
            chain = self.routing.chain(chain_id)
            serving = [t for t in chain.targets if t.state == TargetState.SERVING]
            if not serving:
                last = errors.NotServing(f"chain {chain_id}", "no serving replica")
                self.routing.wait_new(chain_id, chain.version)
                continue
            k = (self.first_replica(ino.inode_id, index, len(serving)) + attempt) % len(serving)
            order = serving[k:] + serving[:k]
            if attempt > 0 and not relaxed:
                order = [serving[-1]] + [t for t in order if t is not serving[-1]]  # prefer the tail on retry
            corrupt = 0
            for t in order:
                req = storage_pb2.ReadReq(
                    target_id=t.target_id,
                    chunk=storage_pb2.ChunkId(inode_id=ino.inode_id, index=index),
                    offset=offset,
                    length=length,
                    relaxed=relaxed,
                    chain_version=chain.version,
                )
                try:
                    return self._read_replica(t, req, out)
                except errors.FS3Error as exc:
                    err = exc
                if isinstance(err, errors.ChecksumMismatchError):
                    msg = (
                        f"chain {chain_id} target {t.target_id} chunk {ino.inode_id}:{index}: {err.strerror}"
                    )
                    logging.warning("corrupt replica, reading another: %s", msg)
                    self.stats.corrupt_reads.append(msg)
                    last = err
                    corrupt += 1
                    continue
                if isinstance(err, errors.ChunkPending):
                    self.stats.pending_retries += 1
                    last = err
                    break  # back off, then retry at the tail
                if isinstance(err, errors.InvalidArgument | errors.FileTooLarge):
                    raise err
                last = err  # unavailable / not serving: try the next replica
            # every replica corrupt, twice (a repair or a rewrite may land in between): EIO now, not at the timeout
            all_corrupt_passes = all_corrupt_passes + 1 if corrupt == len(order) else 0
            if all_corrupt_passes >= 2:
                raise last  # type: ignore[misc]
            attempt += 1
            if attempt > 50:
                relaxed = True
            time.sleep(min(0.05, 0.002 * attempt))
            if isinstance(last, errors.ClusterTimeout | errors.NotServing):
                self.routing.wait_new(chain_id, chain.version)
        if isinstance(last, errors.ChecksumMismatchError):
            raise last
        raise errors.ClusterTimeout(f"chain {chain_id}", f"chunk {ino.inode_id}:{index} not readable: {last}")

    def _read_replica(self, t: common_pb2.ChainTarget, req: storage_pb2.ReadReq, out: memoryview) -> int:
        """One read of ``req`` from replica ``t`` (data port if it has one, else gRPC); bytes found.

        ``out[found:req.length]`` is zeroed. Raises the FS3Error the replica answered, or
        ClusterTimeout when it could not be reached.
        """
        length = req.length
        if length == 0:
            return 0  # (on the data port, length 0 means "to the chunk's end")
        address = self._data_address(t.node_id)
        if address:
            dreq = ReadRequest(
                t.target_id, req.chunk.inode_id, req.chunk.index, req.offset, length, out[:length],
                req.chain_version, req.relaxed,
            )  # fmt: skip
            try:
                (r,) = self._data.read(address, [dreq])
            except OSError as exc:
                raise errors.ClusterTimeout(f"target {t.target_id} (data port {address})", str(exc)) from None
            self.stats.data_port_items += 1
            if r.status == wire.STATUS_ERROR:
                raise errors.from_wire(r.error, f"target {t.target_id}")
            out[r.n : length] = bytes(length - r.n)
            return r.n
        try:
            n = 0
            for raw in self._raw_read(t.node_id)(req, timeout=self.timeout_s):
                found, d = wire.parse_read_rsp(raw)
                if n == 0 and not found and not d:
                    break
                out[n : n + len(d)] = d
                n += len(d)
            out[n:length] = bytes(length - n)
            return n
        except grpc.RpcError as exc:
            raise errors.from_rpc_error(exc, f"target {t.target_id}") from None

    @staticmethod
    def first_replica(inode_id: int, index: int, n_serving: int) -> int:
        """Position among a chain's serving replicas that reads of chunk ``index`` try first.

        Hashed over (inode, chunk) rather than ``index % n``: with the layout's shuffled chain order,
        ``index % n`` can send every chunk of a file to the same storage node.
        """
        return ((inode_id * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9) >> 17) % n_serving

    def read_chunks(self, ino: common_pb2.Inode, spans: list[Span], out: memoryview) -> None:
        """Read every span into ``out[buf_off : buf_off + length]`` (bytes past a chunk's end read as zero).

        Spans are grouped by the storage node of the replica ``read_chunk`` would try first and fetched
        with one ``BatchRead`` per node (capped at BATCH_MAX_ITEMS / BATCH_MAX_BYTES), nodes in
        parallel: one RPC per chunk costs milliseconds of CPU on both ends. Any item that fails, or
        every item of a failed batch, is re-read with ``read_chunk``, which owns retries, failover and
        corruption handling.
        """
        if len(spans) <= 1:
            for s in spans:
                self.read_chunk(ino, s[0], s[1], s[2], out[s[3] : s[3] + s[2]])
            return
        groups: dict[int, list[tuple[Span, int, int]]] = {}
        fallback: list[Span] = []
        for s in spans:
            chain_id = self._chain_for(ino, s[0])
            try:
                chain = self.routing.chain(chain_id)
            except errors.NotFound:
                fallback.append(s)
                continue
            serving = [t for t in chain.targets if t.state == TargetState.SERVING]
            if not serving:
                fallback.append(s)
                continue
            t = serving[self.first_replica(ino.inode_id, s[0], len(serving))]  # read_chunk's first choice
            groups.setdefault(t.node_id, []).append((s, t.target_id, chain.version))
        batches: list[tuple[int, list[tuple[Span, int, int]]]] = []
        for node_id, items in groups.items():
            cur: list[tuple[Span, int, int]] = []
            cur_bytes = 0
            for it in items:
                if cur and (len(cur) >= BATCH_MAX_ITEMS or cur_bytes + it[0][2] > BATCH_MAX_BYTES):
                    batches.append((node_id, cur))
                    cur, cur_bytes = [], 0
                cur.append(it)
                cur_bytes += it[0][2]
            batches.append((node_id, cur))
        for failed in self.parallel([lambda b=b: self._batch_read(ino, b[0], b[1], out) for b in batches]):
            fallback.extend(failed)
        if fallback:
            self.stats.batch_fallbacks += len(fallback)
            self.parallel(
                [
                    lambda s=s: self.read_chunk(ino, s[0], s[1], s[2], out[s[3] : s[3] + s[2]])
                    for s in fallback
                ]
            )

    def _batch_read(
        self, ino: common_pb2.Inode, node_id: int, items: list[tuple[Span, int, int]], out: memoryview
    ) -> list[Span]:
        """One BatchRead of ``items`` ((span, target_id, chain_version)) from ``node_id``; the spans not read.

        Never raises for storage errors: an item is done only when its whole range arrived, so a broken
        stream leaves the rest to the caller's per-chunk fallback.
        """
        self.stats.batch_reads += 1
        address = self._data_address(node_id)
        if address:
            return self._data_batch_read(ino, node_id, address, items, out)
        req = storage_pb2.BatchReadReq(
            items=[
                storage_pb2.ReadReq(
                    target_id=tid,
                    chunk=storage_pb2.ChunkId(inode_id=ino.inode_id, index=s[0]),
                    offset=s[1],
                    length=s[2],
                    chain_version=cv,
                )
                for s, tid, cv in items
            ]
        )
        k = len(items)
        seen, ok = [False] * k, [False] * k
        got, want = [0] * k, [0] * k
        try:
            for raw in self._raw_batch_read(node_id)(req, timeout=self.timeout_s):
                i, found, chunk_length, d, error = wire.parse_batch_read_rsp(raw)
                if i >= k:
                    raise errors.IOFailure(f"storage node {node_id}", f"BatchRead answered item {i} of {k}")
                s = items[i][0]
                if not seen[i]:
                    seen[i] = True
                    if error:
                        err = errors.from_wire(error, f"target {items[i][1]}")
                        logging.debug("batch read item failed, reading it alone: %s", err)
                        self._note_corrupt(err, items[i][1], ino.inode_id, s[0])
                        continue
                    ok[i] = True
                    want[i] = max(0, min(chunk_length, s[1] + s[2]) - s[1]) if found else 0
                if not ok[i]:
                    continue
                n = got[i]
                if n + len(d) > want[i]:
                    ok[i] = False  # more data than the item asked for: distrust it
                    continue
                base = s[3] + n
                out[base : base + len(d)] = d
                got[i] = n + len(d)
        except (grpc.RpcError, errors.FS3Error) as exc:
            logging.debug("BatchRead to storage node %d failed: %s", node_id, exc)
        failed = []
        for i, (s, _, _) in enumerate(items):
            if ok[i] and got[i] == want[i]:
                if want[i] < s[2]:
                    out[s[3] + want[i] : s[3] + s[2]] = bytes(s[2] - want[i])
            else:
                failed.append(s)
        return failed

    def _data_batch_read(
        self,
        ino: common_pb2.Inode,
        node_id: int,
        address: str,
        items: list[tuple[Span, int, int]],
        out: memoryview,
    ) -> list[Span]:
        """``_batch_read`` over the node's data port: the payload lands in ``out`` straight from the socket."""
        reqs = [
            ReadRequest(tid, ino.inode_id, s[0], s[1], s[2], out[s[3] : s[3] + s[2]], cv)
            for s, tid, cv in items
        ]
        try:
            results = self._data.read(address, reqs)
        except PartialRead as exc:
            logging.debug("data port read from storage node %d broke off: %s", node_id, exc.cause)
            results = exc.results
        except OSError as exc:
            logging.debug("data port of storage node %d (%s) unreachable: %s", node_id, address, exc)
            results = []
        self.stats.data_port_items += len(results)
        failed = [s for s, _, _ in items[len(results) :]]
        for (s, tid, _), r in zip(items, results, strict=False):
            if r.status == wire.STATUS_ERROR:
                logging.debug("data port item failed, reading it alone: target %d: %s", tid, r.error)
                self._note_corrupt(errors.from_wire(r.error, f"target {tid}"), tid, ino.inode_id, s[0])
                failed.append(s)
            elif r.n < s[2]:
                out[s[3] + r.n : s[3] + s[2]] = bytes(s[2] - r.n)  # past the chunk's end, or a hole
        return failed

    def _note_corrupt(self, err: errors.FS3Error, target_id: int, inode_id: int, index: int) -> None:
        """Record a replica that failed its checksum in a batch (its server repairs it meanwhile)."""
        if isinstance(err, errors.ChecksumMismatchError):
            msg = f"target {target_id} chunk {inode_id}:{index}: {err.strerror}"
            logging.warning("corrupt replica, reading another: %s", msg)
            self.stats.corrupt_reads.append(msg)

    def parallel(self, fns: list) -> list:
        """Run callables on the I/O pool; re-raise the first error."""
        if len(fns) == 1:
            return [fns[0]()]
        futs = [self._pool.submit(f) for f in fns]
        return [f.result() for f in futs]

    def remove_chunks(self, ino: common_pb2.Inode, first_index: int) -> None:
        """Delete chunks with index >= first_index on every chain of the file's layout."""
        if ino.type != 1 or not ino.layout.chains:
            return

        def one(chain_id: int) -> None:
            def remove(chain: common_pb2.Chain, head: common_pb2.ChainTarget) -> None:
                req = storage_pb2.RemoveRangeReq(
                    chain_id=chain_id,
                    chain_version=chain.version,
                    target_id=head.target_id,
                    inode_id=ino.inode_id,
                    first_index=first_index,
                )
                self.stub(head.node_id).RemoveRange(req, timeout=self.timeout_s)

            self._on_head(chain_id, remove)

        self.parallel([lambda c=c: one(c) for c in sorted(set(ino.layout.chains))])

    def _on_head(
        self, chain_id: int, call: Callable[[common_pb2.Chain, common_pb2.ChainTarget], None]
    ) -> None:
        """Run ``call(chain, head)`` against the chain's head, again on each new routing until it
        succeeds or ``timeout_s`` passes (then the last gRPC error, as an FS3Error)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            chain = self.routing.chain(chain_id)
            try:
                call(chain, chain.targets[0])
                return
            except grpc.RpcError as exc:
                if time.monotonic() > deadline:
                    raise errors.from_rpc_error(exc, f"chain {chain_id}") from None
                self.routing.wait_new(chain_id, chain.version)

    def cut_chunks(self, ino: common_pb2.Inode, length: int, old_size: int) -> None:
        """After a truncate to ``length``: drop whole chunks past it and cut the boundary chunk."""
        cs = ino.layout.chunk_size
        if not cs:
            return
        self.remove_chunks(ino, (length + cs - 1) // cs)
        if length % cs:
            index = length // cs
            chain_id = self._chain_for(ino, index)

            def cut(chain: common_pb2.Chain, head: common_pb2.ChainTarget) -> None:
                header = storage_pb2.UpdateReq(
                    chain_id=chain_id,
                    chain_version=chain.version,
                    target_id=head.target_id,
                    chunk=storage_pb2.ChunkId(inode_id=ino.inode_id, index=index),
                    type=storage_pb2.TRUNCATE,
                    length=length % cs,
                    chunk_size=cs,
                    from_client=True,
                )
                self.stub(head.node_id).Update(wire.update_pieces(header, b""), timeout=self.timeout_s)

            self._on_head(chain_id, cut)
