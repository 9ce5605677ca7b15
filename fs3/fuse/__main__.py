"""The FUSE daemon: ``python -m fs3.fuse --mgmtd HOST:PORT MOUNTPOINT``; runs until unmounted or signalled."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

import pyfuse3
import trio

from fs3.fuse.backend import Backend, LocalBackend
from fs3.fuse.mount import set_readahead_kb
from fs3.fuse.operations import FS3Operations

log = logging.getLogger("fs3.fuse")


def _backend(args: argparse.Namespace) -> Backend:
    if args.local_root:
        return LocalBackend(args.local_root)
    from fs3.fuse.fs3_backend import FS3Backend

    return FS3Backend.connect(args.mgmtd, uid=args.uid, gid=args.gid, timeout_s=args.timeout_s)


async def _run(stop_signals: tuple[int, ...]) -> None:
    async with trio.open_nursery() as nursery:

        async def on_signal() -> None:
            with trio.open_signal_receiver(*stop_signals) as signals:
                async for _ in signals:
                    log.info("signal received: unmounting")
                    pyfuse3.terminate()
                    return

        nursery.start_soon(on_signal)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def _tune_readahead(mountpoint: str, kb: int) -> None:
    try:
        os.statvfs(mountpoint)
    except OSError:
        return
    got = set_readahead_kb(mountpoint, kb)
    if got is None:
        log.warning("could not set read-ahead to %d KiB (not root?): sequential reads are slower", kb)
    else:
        log.info("read-ahead %d KiB", got)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, mount, serve requests, and always unmount on the way out."""
    p = argparse.ArgumentParser(prog="python -m fs3.fuse", description=__doc__)
    p.add_argument("mountpoint")
    p.add_argument("--mgmtd", default=os.environ.get("FS3_MGMTD"), help="cluster manager HOST:PORT")
    p.add_argument("--local-root", help="serve this local directory instead of fs3 (measures FUSE alone)")
    p.add_argument("--uid", type=int, default=0, help="fs3 user id of the daemon's client (default root)")
    p.add_argument("--gid", type=int, default=0)
    p.add_argument("--read-only", action="store_true", help="mount read-only (writes fail with EROFS)")
    p.add_argument(
        "--allow-other", action="store_true",
        help="let other users use the mount (the default when run as root; the kernel checks permissions)",
    )  # fmt: skip
    p.add_argument("--private", action="store_true", help="only the mounting user may use the mount")
    p.add_argument("--timeout-s", type=float, default=30.0, help="per-request cluster timeout (then EIO)")
    p.add_argument("--attr-timeout-s", type=float, default=1.0, help="kernel attribute/entry cache time")
    p.add_argument("--pid-file", help="write the daemon's pid here while mounted")
    p.add_argument(
        "--readahead-kb", type=int, default=4096,
        help="kernel read-ahead of the mount (default 4096: 1 MiB requests, several in flight; 0 = the "
        "kernel's 128 KiB); needs root",
    )  # fmt: skip
    p.add_argument("--debug", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO, format="%(asctime)s %(name)s %(message)s"
    )
    if not args.local_root and not args.mgmtd:
        p.error("give --mgmtd HOST:PORT (or set FS3_MGMTD), or --local-root DIR")
    if not os.path.isdir(args.mountpoint):
        p.error(f"mountpoint {args.mountpoint} is not a directory")

    # the kernel hands each request the caller's umask, which FS3Operations applies: the daemon's own
    # must not mask a second time (the local backend creates files with the modes it is given)
    os.umask(0)
    ops = FS3Operations(
        _backend(args),
        read_only=args.read_only,
        attr_timeout_s=args.attr_timeout_s,
        entry_timeout_s=args.attr_timeout_s,
    )
    options = set(pyfuse3.default_options)
    options |= {"fsname=fs3", "subtype=fs3", "nodev", "nosuid"}
    if args.allow_other and args.private:
        p.error("--allow-other and --private exclude each other")
    if args.allow_other or (os.geteuid() == 0 and not args.private):
        options.add("allow_other")  # a root mount is the node's: shared, like a local disk
    if args.read_only:
        options.add("ro")
    if args.debug:
        options.add("debug")
    pyfuse3.init(ops, args.mountpoint, options)
    if args.readahead_kb > 0:
        # after the kernel's INIT exchange, which caps read-ahead at what it negotiated: a statfs
        # from another thread returns once the loop below serves requests
        threading.Thread(
            target=_tune_readahead, args=(args.mountpoint, args.readahead_kb), daemon=True
        ).start()
    if args.pid_file:
        with open(args.pid_file, "w") as f:
            f.write(f"{os.getpid()}\n")
    log.info("mounted %s at %s", args.mgmtd or args.local_root, args.mountpoint)
    ok = False
    try:
        trio.run(_run, (signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
        ok = True
    finally:
        pyfuse3.close(unmount=ok)
        ops.close_all()
        if not ok:  # crashed: detach the mount so no process blocks on a dead daemon
            os.system(f"fusermount3 -u -z '{args.mountpoint}' >/dev/null 2>&1")
        if args.pid_file:
            try:
                os.unlink(args.pid_file)
            except FileNotFoundError:
                pass
        log.info("unmounted %s", args.mountpoint)
    return 0


if __name__ == "__main__":
    sys.exit(main())
