"""``python -m haiplatform.scheduler --port 7070 --db sqlite:///sched.db``: run the scheduler.

``--db`` takes the database URL every service takes (``sqlite:///path``, a bare SQLite file path, or
``postgresql://...``, see :mod:`ffcommon.db`); ``--postgres DSN`` also takes key=value DSNs.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from ffcommon import db
from haiplatform.scheduler.core import SchedulerConfig, SchedulerCore
from haiplatform.scheduler.service import serve
from haiplatform.scheduler.store import Store


def main(argv: list[str] | None = None) -> int:
    """Parse flags, open the store, bootstrap the admin token, serve until SIGTERM/SIGINT."""
    p = argparse.ArgumentParser(prog="python -m haiplatform.scheduler", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7070, help="0 picks a free port (printed)")
    p.add_argument(
        "--db",
        default="haisched.db",
        help="database: sqlite:///path, a SQLite file path, or postgresql://...",
    )
    p.add_argument("--postgres", default="", help="PostgreSQL DSN (URL or key=value); replaces --db")
    p.add_argument("--admin-token-file", type=Path, help="default: DB_DIR/admin.token (mode 0600)")
    p.add_argument("--heartbeat-s", type=float, default=1.0)
    p.add_argument("--node-timeout-s", type=float, default=10.0)
    p.add_argument("--cycle-s", type=float, default=0.5)
    p.add_argument("--suspend-grace-s", type=float, default=5.0)
    p.add_argument("--term-s", type=float, default=2.0, help="SIGTERM -> SIGKILL delay")
    p.add_argument("--decay-s", type=float, default=1800.0, help="ABOVE_NORMAL -> NORMAL after this")
    p.add_argument(
        "--lease-s",
        type=float,
        default=30.0,
        help="run lease: a run no heartbeat renewed for this long is killed on its node; a job failed "
        "over restarts after lease + term-s (0: no leases, no fencing)",
    )
    p.add_argument("--no-backfill", action="store_true")
    p.add_argument(
        "--fairshare-half-life-s", type=float, default=7 * 86400.0,
        help="half-life of the usage that orders a quota group's users (fair share); 0 turns it off",
    )  # fmt: skip
    p.add_argument("--tls-cert", type=Path)
    p.add_argument("--tls-key", type=Path)
    p.add_argument(
        "--web-port", type=int, help="serve the status page, JSON API and /metrics here (0: free port)"
    )
    p.add_argument("--web-host", help="default: --host")
    p.add_argument("--web-require-token", action="store_true", help="no anonymous reads on the status page")
    p.add_argument("--fs3-mgmtd", default="", help="mgmtd address of the fs3 cluster the status page shows")
    p.add_argument(
        "--fs3-poll-s", type=float, default=5.0, help="how often the page's fs3 panel is refreshed"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for name in (
        "heartbeat_s",
        "node_timeout_s",
        "cycle_s",
        "suspend_grace_s",
        "term_s",
        "decay_s",
        "fs3_poll_s",
    ):
        if getattr(args, name) <= 0:
            print(f"error: --{name.replace('_', '-')} must be positive", file=sys.stderr)
            return 2
    if not 0 <= args.lease_s < float("inf"):
        print("error: --lease-s must be a non-negative number of seconds", file=sys.stderr)
        return 2
    if not 0 <= args.fairshare_half_life_s < float("inf"):
        print("error: --fairshare-half-life-s must be a non-negative number of seconds", file=sys.stderr)
        return 2
    if bool(args.tls_cert) != bool(args.tls_key):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    try:
        where = db.parse_url(args.db)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    store = Store.postgres(args.postgres) if args.postgres else Store.open(args.db)
    config = SchedulerConfig(
        heartbeat_s=args.heartbeat_s, node_timeout_s=args.node_timeout_s, cycle_s=args.cycle_s,
        suspend_grace_s=args.suspend_grace_s, term_s=args.term_s, decay_s=args.decay_s,
        backfill=not args.no_backfill, lease_s=args.lease_s, fairshare_half_life_s=args.fairshare_half_life_s,
    )  # fmt: skip
    core = SchedulerCore(store, config)
    db_file = Path(where.location if where.dialect == db.SQLITE else "haisched.db")
    token_file = args.admin_token_file or db_file.resolve().parent / "admin.token"
    core.bootstrap_admin(token_file)
    tls = (args.tls_cert.read_bytes(), args.tls_key.read_bytes()) if args.tls_cert else None
    server, port = serve(core, f"{args.host}:{args.port}", tls=tls)
    core.start()
    print(f"scheduler listening on {args.host}:{port}; admin token in {token_file}", flush=True)
    web = None
    if args.web_port is not None:
        from haiplatform.web import WebConfig, WebServer

        web_host = args.web_host or args.host
        web_config = WebConfig(
            anonymous_read=not args.web_require_token, fs3_mgmtd=args.fs3_mgmtd, fs3_poll_s=args.fs3_poll_s
        )
        web = WebServer(core, web_host, args.web_port, web_config)
        print(f"status page on http://{web_host}:{web.start()}/", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    if web is not None:
        web.stop()
    server.stop(1)
    core.stop()
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
