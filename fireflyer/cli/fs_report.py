"""``haictl fs df`` and ``haictl fs status``: the cluster's capacity, and each chain's health and repairs."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from fireflyer.cli.fs_common import _client, _human, _reported


def _df_info(c: Any) -> dict[str, Any]:
    """Cluster capacity (``statfs``) plus every target's state and usage (``target_usage``)."""
    from dataclasses import asdict

    sf = c.statfs()
    return {
        "total_bytes": sf.total_bytes,
        "free_bytes": sf.free_bytes,
        "used_bytes": sf.total_bytes - sf.free_bytes,
        "file_bytes": sf.used_bytes,
        "inodes": sf.inodes,
        "targets": [asdict(t) for t in c.target_usage()],
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def df(ctx: click.Context, as_json: bool) -> None:
    """Capacity of the cluster and the state and usage of each storage target.

    Size/Used/Avail are the storage disks (each node's disk counted once, replicas included);
    Files is the sum of file sizes in the namespace; per target, used is its stored chunk bytes and
    disk/avail its file system (a target under its reserve is read-only for new chunks).

    \b
    Example:
      haictl fs df
    """
    with _reported():
        info = _df_info(_client(ctx))
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    total, free, used = info["total_bytes"], info["free_bytes"], info["used_bytes"]
    pct = f"{100 * used / total:.0f}%" if total else "-"
    click.echo(f"{'Filesystem':<12}{'Size':>12}{'Used':>12}{'Avail':>12}{'Use%':>6}{'Files':>12}  Inodes")
    click.echo(
        f"{'fs3':<12}{_human(total):>12}{_human(used):>12}{_human(free):>12}{pct:>6}"
        f"{_human(info['file_bytes']):>12}  {info['inodes']}"
    )
    click.echo(
        f"\n{'target':>8} {'node':>6} {'chain':>6} {'state':<9}{'chunks':>8}{'used':>12}{'disk':>12}{'avail':>12}"
        "  address (data port)"
    )
    for t in info["targets"]:
        chunks = "-" if t["chunks"] is None else str(t["chunks"])
        tused = "-" if t["used_bytes"] is None else _human(t["used_bytes"])
        addr = t["address"] + (f" ({t['data_address']})" if t["data_address"] else "")
        addr += "" if t["alive"] else " (dead)"
        addr += " (read-only: under its reserve)" if t.get("read_only") else ""
        addr += _scrub_note(t)
        disk = "-" if t["disk_total_bytes"] is None else _human(t["disk_total_bytes"])
        avail = "-" if t["disk_free_bytes"] is None else _human(t["disk_free_bytes"])
        click.echo(
            f"{t['target_id']:>8} {t['node_id']:>6} {t['chain_id']:>6} {t['state']:<9}{chunks:>8}{tused:>12}"
            f"{disk:>12}{avail:>12}  {addr}"
        )


def _scrub_note(t: dict[str, Any]) -> str:
    """`` (scrub: 2 corrupt found, 1 repaired, 1 waiting)`` for a target whose scrub found anything."""
    if not t.get("corrupt_chunks"):
        return ""
    waiting = f", {t['unrepaired_chunks']} waiting for a good copy" if t.get("unrepaired_chunks") else ""
    return f" (scrub: {t['corrupt_chunks']} corrupt found, {t.get('repaired_chunks') or 0} repaired{waiting})"


def _status_info(c: Any) -> dict[str, Any]:
    """Every chain with its targets in chain order (head first): state, node, liveness and capacity,
    plus the repairs the cluster reports (resyncs of SYNCING targets, corrupt chunks not repaired yet)."""
    routing = c.refresh_routing()
    usage = {t.target_id: t for t in c.target_usage(exact_bytes=False)}
    chains, repairs = [], []
    for chain in sorted(routing.chains, key=lambda ch: ch.chain_id):
        targets = []
        for t in chain.targets:
            u = usage.get(t.target_id)
            state = u.state if u else str(t.state)
            targets.append({
                "target_id": t.target_id, "node_id": t.node_id, "state": state,
                "alive": bool(u and u.alive), "address": u.address if u else "",
                "chunks": u.chunks if u else None, "disk_total_bytes": u.disk_total_bytes if u else None,
                "disk_free_bytes": u.disk_free_bytes if u else None,
                "reserve_bytes": u.reserve_bytes if u else None, "read_only": u.read_only if u else None,
                "corrupt_chunks": u.corrupt_chunks if u else None,
                "repaired_chunks": u.repaired_chunks if u else None,
                "unrepaired_chunks": u.unrepaired_chunks if u else None,
            })  # fmt: skip
            if state == "SYNCING":
                repairs.append({"kind": "resync", "chain_id": chain.chain_id, "target_id": t.target_id})
            if u and u.unrepaired_chunks:
                repairs.append({"kind": "chunk repair", "chain_id": chain.chain_id, "target_id": t.target_id,
                                "chunks": u.unrepaired_chunks})  # fmt: skip
        serving = sum(t["state"] == "SERVING" for t in targets)
        chains.append({"chain_id": chain.chain_id, "version": chain.version, "serving": serving,
                       "replicas": len(targets), "targets": targets})  # fmt: skip
    return {
        "mgmtd_leader": c.routing_cache.mgmtd_leader,  # the instance that answered, of mgmtd_instances
        "mgmtd_instances": c.routing_cache.mgmtd_addresses,
        "routing_version": routing.routing_version,
        "chunk_size": routing.chunk_size,
        "stripe": routing.stripe,
        "chains": chains,
        "repairs": repairs,
    }


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def status_cmd(ctx: click.Context, as_json: bool) -> None:
    """Health of the cluster: each chain's targets (head first) with state, node, capacity; repairs.

    A chain is degraded when fewer of its targets are SERVING than it has replicas; a SYNCING
    target is being resynced from its predecessor (listed under repairs); a target whose free space
    fell under its reserve is read-only (new chunks get ENOSPC). Exit status 1 when a chain has no
    SERVING target (its data cannot be read).

    \b
    Example:
      haictl fs status
    """
    with _reported():
        info = _status_info(_client(ctx))
    if as_json:
        click.echo(json.dumps(info, indent=2))
    else:
        click.echo(
            f"routing version {info['routing_version']}, {len(info['chains'])} chains, "
            f"chunk size {_human(info['chunk_size'])}, stripe {info['stripe']}"
        )
        standbys = [a for a in info["mgmtd_instances"] if a != info["mgmtd_leader"]]
        click.echo(
            f"mgmtd leader {info['mgmtd_leader']}" + (f", standbys {', '.join(standbys)}" if standbys else "")
        )
        for ch in info["chains"]:
            health = (
                "ok" if ch["serving"] == ch["replicas"] else "DEGRADED" if ch["serving"] else "UNAVAILABLE"
            )
            click.echo(
                f"\nchain {ch['chain_id']} (version {ch['version']}): {ch['serving']}/{ch['replicas']} serving, {health}"
            )
            click.echo(
                f"  {'target':>8} {'node':>6} {'state':<9}{'chunks':>8}{'disk free':>12}{'disk size':>12}  address"
            )
            for t in ch["targets"]:
                chunks = "-" if t["chunks"] is None else str(t["chunks"])
                free = "-" if t["disk_free_bytes"] is None else _human(t["disk_free_bytes"])
                size = "-" if t["disk_total_bytes"] is None else _human(t["disk_total_bytes"])
                addr = t["address"] + ("" if t["alive"] else " (dead)")
                addr += " (read-only: free space under its reserve)" if t["read_only"] else ""
                addr += _scrub_note(t)
                click.echo(
                    f"  {t['target_id']:>8} {t['node_id']:>6} {t['state']:<9}{chunks:>8}{free:>12}{size:>12}  {addr}"
                )
        click.echo("\nrepairs in progress:")
        for r in info["repairs"]:
            chunks = f": {r['chunks']} corrupt chunks" if r.get("chunks") else ""
            click.echo(f"  {r['kind']} of target {r['target_id']} (chain {r['chain_id']}){chunks}")
        if not info["repairs"]:
            click.echo("  none")
    if any(ch["serving"] == 0 for ch in info["chains"]):
        sys.exit(1)
