"""``python -m haiplatform.agent --scheduler HOST:PORT --node-name n1 --slots 8 --work-dir DIR``."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from haiplatform.agent.agent import Agent, AgentConfig


def main(argv: list[str] | None = None) -> int:
    """Parse flags, run the agent until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(prog="python -m haiplatform.agent", description=__doc__)
    p.add_argument("--scheduler", required=True, help="scheduler host:port")
    p.add_argument("--node-name", required=True)
    p.add_argument("--slots", type=int, default=8, help="GPU slots of this node (default 8)")
    p.add_argument("--work-dir", required=True, type=Path, help="rank logs go under WORK_DIR/logs")
    p.add_argument("--host", default="127.0.0.1", help="address ranks and the scheduler reach this node at")
    p.add_argument("--token", default=os.environ.get("HAI_TOKEN", ""), help="admin token (or HAI_TOKEN)")
    p.add_argument("--token-file", type=Path, help="file holding the admin token")
    p.add_argument("--health-check", default="", help="validator shell command (default: built-in checks)")
    p.add_argument("--health-interval-s", type=float, default=60.0)
    p.add_argument(
        "--cgroup",
        default="auto",
        help="cgroup v2 per run: auto (where writable), off, or the cgroup v2 directory to use",
    )
    p.add_argument("--tls-ca", type=Path, help="CA certificate of the scheduler's TLS certificate")
    p.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus /metrics on this port (0 = any)"
    )
    p.add_argument(
        "--job-env", action="append", default=[], metavar="NAME=VALUE",
        help="set in every rank's environment unless the job sets it (repeatable; haictl up passes FS3_MGMTD)",
    )  # fmt: skip
    p.add_argument(
        "--fs3-mount", default="", help="this node's fs3 mount: ranks get FS3_MOUNT while it is mounted"
    )
    args = p.parse_args(argv)
    job_env = dict(item.split("=", 1) for item in args.job_env if "=" in item)
    if len(job_env) != len(args.job_env):
        print("error: --job-env must be NAME=VALUE", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = args.token or (args.token_file.read_text().strip() if args.token_file else "")
    if not token:
        print("error: --token or --token-file is required", file=sys.stderr)
        return 2
    if args.slots < 1:
        print("error: --slots must be a positive integer", file=sys.stderr)
        return 2
    agent = Agent(
        AgentConfig(
            scheduler=args.scheduler, node_name=args.node_name, work_dir=args.work_dir, token=token,
            slots=args.slots, host=args.host, health_check=args.health_check,
            health_interval_s=args.health_interval_s,
            tls_ca=args.tls_ca.read_bytes() if args.tls_ca else None, cgroup=args.cgroup,
            job_env=job_env, fs3_mount=args.fs3_mount,
        )
    )  # fmt: skip
    if args.metrics_port is not None:
        from ffcommon.metrics import serve_metrics

        port = serve_metrics(args.metrics_port, host=args.host)
        logging.info("agent %s metrics on http://%s:%d/metrics", args.node_name, args.host, port)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    signal.signal(signal.SIGINT, lambda *_: agent.stop())
    agent.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
