"""FUSE mount of an fs3 cluster: ``python -m fs3.fuse --mgmtd HOST:PORT MOUNTPOINT`` (pyfuse3 over libfuse 3)."""

from fs3.fuse.mount import is_mounted, mount, unmount, wait_for_mount

__all__ = ["mount", "unmount", "is_mounted", "wait_for_mount"]
