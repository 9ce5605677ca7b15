"""One builder for the fs3 servers' command lines: LocalCluster and haictl up/serve use the same one."""

from __future__ import annotations

import sys
from pathlib import Path

from fireflyer.config import DEFAULT_CONFIG_TOML, parse_config
from fireflyer.services import service_argv
from fs3 import admin


def test_storage_argv_carries_only_the_flags_given():
    argv = admin.storage_argv(2, "10.0.0.3", 9000, Path("/d/s2"), "10.0.0.1:8000", data_port=-1)
    assert argv == [sys.executable, "-m", "fs3.storage", "--host", "10.0.0.3", "--port", "9000",
                    "--node-id", "10003", "--data-dir", "/d/s2", "--mgmtd", "10.0.0.1:8000", "--data-port", "-1"]  # fmt: skip
    full = admin.storage_argv(
        0, "h", 1, "/d", "m:2", 0, heartbeat_s=0.5, metrics_port=7, fsync=False, reserve_bytes=9
    )
    assert full[full.index("--mgmtd") + 2 :] == ["--heartbeat-s", "0.5", "--metrics-port", "7", "--no-fsync",
                                                 "--data-port", "0", "--reserve-bytes", "9"]  # fmt: skip


def test_haictl_serve_builds_fs3_argv_through_fs3_admin():
    cfg = parse_config(DEFAULT_CONFIG_TOML)
    srv = cfg.storage.servers[1]
    assert service_argv(cfg, "storage", index=1) == admin.storage_argv(
        1,
        srv.host,
        srv.port,
        cfg.data_dir / "storage-1",
        cfg.mgmtd.addresses,
        srv.data_port,
        scrub_rate_bytes_s=cfg.storage.scrub_rate_bytes_s,
    )
    db_url = f"sqlite://{cfg.data_dir / 'fs3' / 'fs3.db'}"
    assert service_argv(cfg, "mgmtd") == admin.mgmtd_argv(
        cfg.mgmtd.host, cfg.mgmtd.port, db_url, cfg.mgmtd.lease_s
    )
    assert service_argv(cfg, "meta") == admin.meta_argv(
        cfg.meta.host, cfg.meta.port, db_url, cfg.mgmtd.addresses
    )
    standby = cfg.mgmtd.standbys[0]  # the embedded config runs one; servers are given both addresses
    assert service_argv(cfg, "mgmtd", index=1) == admin.mgmtd_argv(
        standby.host, standby.port, db_url, cfg.mgmtd.lease_s
    )
    assert cfg.mgmtd.addresses == f"{cfg.mgmtd.address},{standby.address}"
