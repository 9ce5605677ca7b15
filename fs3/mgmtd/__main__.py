"""``python -m fs3.mgmtd --port P --db sqlite:///state.db [--lease-s 3]``: run the cluster manager.

Start two or more on the same ``--db`` for a standby: the one holding the leader lease answers,
the others take over within about ``--leader-lease-s`` of its death.
"""

from __future__ import annotations

import argparse

from fs3 import _rpc
from fs3.mgmtd.service import MgmtdService
from fs3.protos import mgmtd_pb2_grpc


def main() -> None:
    """Parse flags, start the gRPC server, serve until SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", required=True, help="sqlite:///path or postgresql://... (shared with meta)")
    ap.add_argument(
        "--lease-s", type=float, default=60.0, help="a node is dead after this long without heartbeat"
    )
    ap.add_argument(
        "--leader-lease-s",
        type=float,
        default=3.0,
        help="a standby takes over after the leader has not renewed its lease for this long",
    )
    ap.add_argument(
        "--advertise",
        default="",
        help="HOST:PORT that standbys name as the leader's (default HOST:PORT of --host/--port)",
    )
    ap.add_argument("--scan-interval-s", type=float, default=0.2, help="how often chains are re-evaluated")
    _rpc.add_metrics_flag(ap)
    args = ap.parse_args()
    _rpc.setup_logging("mgmtd")
    svc = MgmtdService(
        args.db,
        lease_s=args.lease_s,
        scan_interval_s=args.scan_interval_s,
        address=args.advertise or f"{args.host}:{args.port}",
        leader_lease_s=args.leader_lease_s,
    )
    server = _rpc.make_server()
    mgmtd_pb2_grpc.add_MgmtdServicer_to_server(svc, server)
    server.add_insecure_port(f"{args.host}:{args.port}")
    if args.metrics_port is not None:
        from prometheus_client import REGISTRY

        REGISTRY.register(svc)  # target states and node liveness, read at each scrape
    _rpc.start_metrics(args, "mgmtd")
    _rpc.serve_forever(server, "mgmtd", on_stop=svc.stop)


if __name__ == "__main__":
    main()
