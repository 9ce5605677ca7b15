"""``python -m fs3.storage --port P --node-id 10001 --data-dir DIR --mgmtd HOST:PORT``: run a storage server.

The data port (``--data-port``) carries chunk reads and updates; the gRPC port carries control
(routing, resync metadata, space) and both for clients and peers that have no data port.
"""

from __future__ import annotations

import argparse
import logging
import resource

from fs3 import _rpc
from fs3.protos import storage_pb2_grpc
from fs3.storage import dataport
from fs3.storage.dataport import DataServer
from fs3.storage.scrub import DEFAULT_PAUSE_S, DEFAULT_RATE_BYTES_S
from fs3.storage.service import StorageService

# gRPC messages to storage carry at most one 1 MiB piece (Update) or a small request; refuse bigger ones
MAX_RECEIVE_BYTES = 4 << 20


def _bound_process_resources() -> None:
    """Let the data port hold its connections: raise the descriptor limit to its hard maximum (a
    Debian root shell starts at 1,024).

    No mallopt: payload buffers grow only as bytes arrive (``wire.recv_growing``), so a refused
    stream never holds much; pinning glibc's mmap threshold at 1 MiB made every 1 MiB chunk buffer a
    fresh zeroed mmap and cost reads over gRPC 0.7 -> 0.4 GB/s and writes about a third.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(
                resource.RLIMIT_NOFILE, (hard if hard != resource.RLIM_INFINITY else 1 << 20, hard)
            )
        except (ValueError, OSError) as exc:
            logging.warning("cannot raise the descriptor limit from %d: %s", soft, exc)


def main() -> None:
    """Parse flags, start the gRPC server and the heartbeat, serve until SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--node-id", type=int, required=True, help="10001 and up")
    ap.add_argument("--data-dir", required=True, help="one sub-directory per target is created here")
    ap.add_argument(
        "--mgmtd", required=True, help="mgmtd addresses HOST:PORT[,HOST:PORT...] (leader and standbys)"
    )
    ap.add_argument(
        "--data-port",
        type=int,
        default=0,
        help="TCP port of the data port that carries chunk reads and updates (0: any free port, "
        "advertised through mgmtd; -1: none, everything goes over gRPC)",
    )
    ap.add_argument("--heartbeat-s", type=float, default=1.0)
    ap.add_argument(
        "--reserve-bytes",
        type=int,
        default=-1,
        help="free space each target keeps back: under it, new or growing chunks get ENOSPC "
        "(-1: 5%% of the target's file system, at most 1 GiB)",
    )
    ap.add_argument(
        "--data-port-max-connections",
        type=int,
        default=dataport.MAX_CONNECTIONS,
        help="connections the data port holds at once; at the limit the longest idle one makes room",
    )
    ap.add_argument(
        "--data-port-idle-timeout-s",
        type=float,
        default=dataport.IDLE_TIMEOUT_S,
        help="a data-port connection silent this long (between or inside requests) is closed",
    )
    ap.add_argument(
        "--scrub-rate-bytes-s",
        type=int,
        default=DEFAULT_RATE_BYTES_S,
        help="bytes/s the background scrubber re-reads and checks (0: no scrub; default 32 MiB/s)",
    )
    ap.add_argument(
        "--scrub-pause-s", type=float, default=DEFAULT_PAUSE_S, help="pause between two scrub passes"
    )
    ap.add_argument("--no-fsync", action="store_true", help="do not fsync chunk files (benchmarks only)")
    ap.add_argument(
        "--exit-on-mgmtd-loss",
        action="store_true",
        help="exit after half a lease without any mgmtd (default: keep serving on the last routing known)",
    )
    ap.add_argument("--no-exit-on-mgmtd-loss", action="store_true", help=argparse.SUPPRESS)  # the default now
    _rpc.add_metrics_flag(ap)
    args = ap.parse_args()
    _rpc.setup_logging(f"storage-{args.node_id}")
    _bound_process_resources()
    server = _rpc.make_server(max_workers=64, max_receive_bytes=MAX_RECEIVE_BYTES)
    data: DataServer | None = None
    if args.data_port >= 0:
        data = DataServer(
            args.host,
            args.data_port,
            lambda *item: svc.reader.read_item(*item),
            f"storage-{args.node_id}",
            update=lambda req, payload: svc.updater.update(req, payload),
            max_connections=args.data_port_max_connections,
            idle_timeout_s=args.data_port_idle_timeout_s,
        )
    svc = StorageService(
        node_id=args.node_id,
        address=f"{args.host}:{args.port}",
        data_dir=args.data_dir,
        mgmtd=args.mgmtd,
        heartbeat_s=args.heartbeat_s,
        fsync=not args.no_fsync,
        exit_on_mgmtd_loss=args.exit_on_mgmtd_loss,
        data_address=data.address if data else "",
        reserve_bytes=None if args.reserve_bytes < 0 else args.reserve_bytes,
        scrub_rate_bytes_s=args.scrub_rate_bytes_s,
        scrub_pause_s=args.scrub_pause_s,
    )
    storage_pb2_grpc.add_StorageServicer_to_server(svc, server)
    server.add_insecure_port(f"{args.host}:{args.port}")
    if data:
        data.start()
    svc.start()
    _rpc.start_metrics(args, f"storage-{args.node_id}")
    _rpc.serve_forever(server, f"storage-{args.node_id}", on_stop=svc.stop)


if __name__ == "__main__":
    main()
