"""``python -m fs3.meta --port P --db sqlite:///meta.db --mgmtd HOST:PORT``: run a meta server."""

from __future__ import annotations

import argparse
import os

from fs3 import _rpc
from fs3.meta.service import MetaService
from fs3.meta.store import DEFAULT_LEASE_S
from fs3.protos import meta_pb2_grpc


def main() -> None:
    """Parse flags, start the gRPC server, serve until SIGTERM."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--db", required=True, help="sqlite:///path or postgresql://...")
    ap.add_argument(
        "--mgmtd", required=True, help="mgmtd addresses HOST:PORT[,HOST:PORT...] (leader and standbys)"
    )
    ap.add_argument("--node-id", type=int, default=100)
    ap.add_argument("--heartbeat-s", type=float, default=1.0)
    ap.add_argument(
        "--lease-s",
        type=float,
        default=float(os.environ.get("FS3_META_LEASE_S", DEFAULT_LEASE_S)),
        help="a client's open files (sessions) expire this long after its last renewal "
        f"(default $FS3_META_LEASE_S or {DEFAULT_LEASE_S:g})",
    )
    _rpc.add_metrics_flag(ap)
    args = ap.parse_args()
    _rpc.setup_logging("meta")
    svc = MetaService(
        args.db,
        args.mgmtd,
        node_id=args.node_id,
        address=f"{args.host}:{args.port}",
        heartbeat_s=args.heartbeat_s,
        lease_s=args.lease_s,
    )
    server = _rpc.make_server()
    meta_pb2_grpc.add_MetaServicer_to_server(svc, server)
    server.add_insecure_port(f"{args.host}:{args.port}")
    _rpc.start_metrics(args, "meta")
    _rpc.serve_forever(server, "meta", on_stop=svc.stop)


if __name__ == "__main__":
    main()
