"""deploy/ holds what operators run: its manifests, units and configs must be valid as shipped."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from fireflyer.config import ConfigError, load_config, parse_config
from fireflyer.services import dump_config, service_argv

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
UNITS = sorted((DEPLOY / "systemd").glob("*.service"))


def test_example_config_parses_with_every_role():
    cfg = load_config(DEPLOY / "cluster.example.toml")
    assert cfg.storage.replicas == 3 and len(cfg.storage.servers) == 3
    assert cfg.meta.database.startswith("postgresql://")
    assert [a.name for a in cfg.agents] == ["gpu-node-001", "gpu-node-002"]
    assert [s.data_port for s in cfg.storage.servers] == [9202, 9202, 9202]
    again = parse_config(dump_config(cfg))  # what `haictl up` writes for the services reads back the same
    assert again.storage.servers == cfg.storage.servers
    assert service_argv(cfg, "storage", index=1)[-2:] == ["--data-port", "9202"]
    # a standby mgmtd on its own host; every service is given both instances
    assert again.mgmtd.standbys == cfg.mgmtd.standbys and len(cfg.mgmtd.standbys) == 1
    standby = service_argv(cfg, "mgmtd", index=1)
    assert standby[standby.index("--host") + 1] == "10.0.0.14"
    meta = service_argv(cfg, "meta")
    assert meta[meta.index("--mgmtd") + 1] == "10.0.0.10:9000,10.0.0.14:9000"


def test_configmap_embeds_a_valid_cluster_config():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s" / "01-config.yaml").read_text()))
    cfg = parse_config(docs[0]["data"]["cluster.toml"])
    assert cfg.mgmtd.port == 9000 and [s.host for s in cfg.mgmtd.standbys] == [
        "mgmtd-1.mgmtd.fireflyer.svc.cluster.local"
    ]


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("[storage]\nreplicas = 4", "storage.replicas"),
        ("[mgmtd]\nport = 70000", "mgmtd.port"),
        ("[storage]\nchunk_size_bytes = 1000", "storage.chunk_size_bytes"),
        ("[[agents]]\nname = 'a'\n[[agents]]\nname = 'a'", "agents"),
        ("[scheduler]\nsurpend_grace_s = 1.0", "scheduler.surpend_grace_s"),
        ("[meta]\ndatabase = 'mysql://x'", "meta.database"),
        ("[storage]\nservers = [{ port = 1, data_port = -1 }]", "storage.servers[0].data_port"),
        ("[mgmtd]\nstandbys = [{ port = 70000 }]", "mgmtd.standbys[0].port"),
        ("[mgmtd]\nstandbys = [{ host = '10.0.0.2', port = 1 }]", "mgmtd.standbys[0].host"),
    ],
)
def test_bad_config_is_rejected_naming_the_field(toml, field):
    with pytest.raises(ConfigError, match=rf"^{re.escape(field)}\b"):
        parse_config(toml)


@pytest.mark.skipif(shutil.which("kubernetes-validate") is None, reason="kubernetes-validate not installed")
@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifest_validates_strictly(manifest):
    # kubectl --dry-run=client needs a live API server for discovery; kubernetes-validate checks
    # the same OpenAPI schemas offline, rejecting unknown fields with --strict.
    out = subprocess.run(
        ["kubernetes-validate", "--strict", "--quiet", str(manifest)], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_units_verify_cleanly(tmp_path):
    haictl = shutil.which("haictl")
    assert haictl, "haictl is not on PATH: is the package installed?"
    for unit in UNITS:  # verify checks that ExecStart exists: point it at this installation's haictl
        (tmp_path / unit.name).write_text(unit.read_text().replace("/usr/local/bin/haictl", haictl))
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
    )
    # verify exits 0 even for unparsable settings, which it only reports: any output is a failure.
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
