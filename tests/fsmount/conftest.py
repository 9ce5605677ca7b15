"""Fixtures for fs3-on-training-nodes tests: FUSE mounts that are always unmounted, daemons always killed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ffcommon.launcher import Launcher


def fuse_unavailable_reason() -> str | None:
    """Why a FUSE mount cannot work here, or None if it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 not installed (apt-get install fuse3)"
    try:
        import pyfuse3  # noqa: F401
    except ImportError:
        return "pyfuse3 not installed"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = fuse_unavailable_reason()
    if reason:
        for item in items:
            if "fuse" in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@dataclass
class Mounted:
    """A live mount: where it is, how it was made, and its daemon's launcher."""

    kind: str
    path: Path
    launcher: Launcher
    backing: Path | None = None  # the local directory behind a passthrough mount
    cluster: object = None  # the fs3 LocalCluster behind an fs3 mount
    client: object = None  # a native client of the same cluster


def _mount(kind: str, base: Path, extra: tuple[str, ...] = ()) -> Iterator[Mounted]:
    from fs3.fuse import mount, unmount

    lnch = Launcher(base / "logs")
    mp = base / "mnt"
    mp.mkdir(parents=True, exist_ok=True)
    try:
        if kind == "local":
            backing = base / "backing"
            backing.mkdir(exist_ok=True)
            os.chmod(backing, 0o755)
            mount(lnch, str(mp), local_root=str(backing), extra=("--allow-other", *extra))
            yield Mounted(kind, mp, lnch, backing=backing)
        elif kind == "fs3":
            from fs3 import LocalCluster, LocalClusterConfig

            # 3 storage servers, 3 replicas, small chunks so that files span several chains
            with LocalCluster(LocalClusterConfig(chunk_size=256 << 10), work_dir=base / "cluster") as cluster:
                mount(lnch, str(mp), mgmtd=cluster.mgmtd_address, extra=("--allow-other", *extra))
                yield Mounted(kind, mp, lnch, cluster=cluster, client=cluster.client())
        else:
            raise ValueError(kind)
    finally:
        try:
            unmount(mp, lazy=True)
        finally:
            lnch.stop_all(grace_s=3)
            if os.path.ismount(mp):
                os.system(f"umount -l '{mp}'")


@pytest.fixture(scope="module", params=["local", "fs3"])
def mounted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounted]:
    """One mount per module and backend kind, shared by its tests (each test works in its own directory)."""
    reason = fuse_unavailable_reason()
    if reason:
        pytest.skip(reason)
    # not under pytest's tmp dir: that is mode 0700, and the other-user tests must reach the mount
    base = Path(tempfile.mkdtemp(prefix=f"fs3-{request.param}-"))
    os.chmod(base, 0o755)
    try:
        yield from _mount(request.param, base)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def mdir(mounted: Mounted, request: pytest.FixtureRequest) -> Path:
    """A fresh directory inside the mount for one test, world-writable for the unprivileged-user tests."""
    d = mounted.path / request.node.name.replace("[", "_").replace("]", "").replace("/", "_")
    d.mkdir()
    return d
