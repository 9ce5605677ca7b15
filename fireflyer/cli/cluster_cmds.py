"""``haictl up / down / status / serve``: run a cluster on one machine, or one role of it on a host."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import click

from fireflyer.config import ROLES, ClusterConfig, load_config
from fireflyer.errors import FireflyerError

_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), envvar="FIREFLYER_CONFIG",
    help="cluster TOML (default: the embedded single-machine config; env FIREFLYER_CONFIG)",
)  # fmt: skip
_data_dir_option = click.option(
    "--data-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FIREFLYER_DATA_DIR",
    help="the cluster's data directory, overriding [cluster].data_dir (env FIREFLYER_DATA_DIR)",
)  # fmt: skip


def _load(config_path: Path | None, data_dir: Path | None) -> ClusterConfig:
    try:
        cfg = load_config(config_path)
    except FireflyerError as exc:
        raise click.ClickException(str(exc)) from None
    if data_dir is not None:
        cfg.data_dir = data_dir.expanduser().resolve()
    return cfg


def _find(config_path: Path | None, data_dir: Path | None) -> Path:
    """The data directory of the cluster meant: --data-dir, --config, then what haictl up recorded."""
    from fireflyer import cluster

    try:
        return cluster.find_cluster(data_dir, config_path)
    except FireflyerError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@_config_option
@_data_dir_option
@click.option("--no-client-config", is_flag=True, help="do not write ~/.config/fireflyer/client.toml")
@click.option("--json", "as_json", is_flag=True, help="print the cluster state as JSON")
def up(config_path: Path | None, data_dir: Path | None, no_client_config: bool, as_json: bool) -> None:
    """Start a whole cluster on this machine: mgmtd, meta, storage servers, scheduler with its web page, agents.

    Data and logs go under the config's data_dir (default ~/.fireflyer/local).

    \b
    Example:
      haictl up && haictl status && haictl down
    """
    from fireflyer import cluster

    cfg = _load(config_path, data_dir)
    try:
        state = cluster.up(
            cfg, progress=(lambda s: None) if as_json else (lambda s: click.echo(f"  started {s}"))
        )
    except FireflyerError as exc:
        raise click.ClickException(str(exc)) from None
    if not no_client_config:
        state["client_config"] = str(cluster.write_client_config(load_config(state["config"])))
    if as_json:
        click.echo(json.dumps(state, indent=2))
        return
    click.echo(f"\nFire-Flyer cluster {state['name']!r} is up ({len(state['processes'])} processes).")
    click.echo(f"  status page   {state['web']}")
    click.echo(f"  scheduler     {state['scheduler']}   admin token: {state['admin_token_file']}")
    click.echo(f"  fs3 mgmtd     {state['mgmtd']}")
    click.echo(f"  metrics       {', '.join(f'{n} {u}' for n, u in state['metrics'].items() if u)}")
    click.echo(f"  logs          {cfg.data_dir / 'logs'}")
    if "client_config" in state:
        click.echo(f"  haictl is pointed at it through {state['client_config']}")
    click.echo(
        "Try: haictl nodes; haictl submit --name hello --nodes 1 -- echo hi; haictl fs ls /; haictl down"
    )


@click.command()
@_config_option
@_data_dir_option
def down(config_path: Path | None, data_dir: Path | None) -> None:
    """Stop the cluster started by ``haictl up``, servers restarted by ``haictl serve`` included.

    Without --data-dir/--config it stops the cluster the last ``haictl up`` recorded in the client
    config (else the one in the default data_dir).

    \b
    Example:
      haictl down
    """
    from fireflyer import cluster

    try:
        names = cluster.down(_find(config_path, data_dir))
    except FireflyerError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"stopped {len(names)} processes: {', '.join(names)}")


@click.command()
@_config_option
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def status(config_path: Path | None, data_dir: Path | None, as_json: bool) -> None:
    """Say what runs where for the cluster started by ``haictl up``; exit 1 if a process is down.

    Finds the cluster like ``down``; a server restarted by ``haictl serve`` shows with its new pid.

    \b
    Example:
      haictl status --json
    """
    from fireflyer import cluster

    try:
        state = cluster.status(_find(config_path, data_dir))
    except FireflyerError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(state, indent=2))
    else:
        click.echo(
            f"cluster {state['name']!r}: web {state['web']}  scheduler {state['scheduler']}  mgmtd {state['mgmtd']}"
        )
        click.echo(f"{'process':14} {'pid':>8}  {'state':6}  log")
        for name, proc in state["processes"].items():
            click.echo(f"{name:14} {proc['pid']:>8}  {'up' if proc['alive'] else 'DOWN':6}  {proc['log']}")
    if not all(p["alive"] for p in state["processes"].values()):
        raise SystemExit(1)


@click.command()
@click.argument("role", type=click.Choice(ROLES))
@_config_option
@_data_dir_option
@click.option(
    "--index",
    type=int,
    default=0,
    help="storage: the server's index in [storage].servers; mgmtd: 0 the first, 1.. mgmtd.standbys",
)
@click.option("--name", default="", help="agent: this node's name (default: the first [[agents]] entry)")
@click.option("--mountpoint", default="", help="fuse: where to mount fs3")
@click.option("--dry-run", is_flag=True, help="print the command instead of running it")
@click.option(
    "--detach", is_flag=True, help="run in the background, log under DATA_DIR/logs (local clusters)"
)
def serve(role: str, config_path: Path | None, data_dir: Path | None, index: int, name: str, mountpoint: str,
          dry_run: bool, detach: bool) -> None:  # fmt: skip
    """Run one role of the cluster in the foreground (what systemd units and pods run).

    The config is --config, else the cluster.toml that ``haictl up`` wrote into the data directory
    (so ``--data-dir DIR`` restarts a server of that local cluster on its ports), else the embedded
    one. In a local cluster the server is registered in DIR/cluster.json: ``haictl status`` shows it
    and ``haictl down`` stops it. ``--detach`` starts it in the background and returns once it serves.

    \b
    Examples:
      haictl serve storage --index 0 --config /etc/fireflyer/cluster.toml
      haictl serve storage --index 1 --data-dir ~/.fireflyer/local --detach
      haictl serve mgmtd --index 1 --config /etc/fireflyer/cluster.toml   # a standby mgmtd
    """
    from fireflyer import cluster

    try:
        cfg = cluster.serve_config(config_path, data_dir)
        argv = cluster.service_argv(cfg, role, index=index, name=name, mountpoint=mountpoint)
        if dry_run:
            click.echo(" ".join(argv))
            return
        if detach:
            entry = cluster.serve_detached(cfg, role, index=index, name=name)
            click.echo(f"{entry['name']} serves again (pid {entry['pid']}, log {entry['log']})")
            return
        for sub in ("fs3", "scheduler", "agents"):
            (cfg.data_dir / sub).mkdir(parents=True, exist_ok=True)
        cluster.register_foreground(cfg, role, argv, index=index, name=name)
    except FireflyerError as exc:
        raise click.ClickException(str(exc)) from None
    except RuntimeError as exc:  # the server did not start: its log's end is in the message
        raise click.ClickException(str(exc)) from None
    os.execv(argv[0], argv)


@click.command("init-chains")
@_config_option
@_data_dir_option
def init_chains(config_path: Path | None, data_dir: Path | None) -> None:
    """Upload the chain table the config describes to mgmtd, once (3FS's init-cluster + upload-chains).

    Storage servers serve nothing until this ran; a second run leaves an existing table alone.

    \b
    Example:
      haictl init-chains --config /etc/fireflyer/cluster.toml
    """
    from fireflyer import cluster
    from fs3.admin import ensure_chain_table

    cfg = cluster.serve_config(config_path, data_dir)
    table = cluster.chain_table_for(cfg)
    if ensure_chain_table(cfg.mgmtd.addresses, table):
        click.echo(
            f"uploaded {len(table.chains)} chains of {cfg.storage.replicas} targets to {cfg.mgmtd.addresses}"
        )
    else:
        click.echo(f"{cfg.mgmtd.addresses} already has a chain table; left unchanged")


@click.command()
@_data_dir_option
@click.option("--ranks-per-node", type=int, default=2, show_default=True, help="training ranks on each node")
@click.option("--steps", type=int, default=150, show_default=True, help="training steps")
@click.option("--keep", is_flag=True, help="leave the cluster running afterwards")
def demo(data_dir: Path | None, ranks_per_node: int, steps: int, keep: bool) -> None:
    """Run the main job: cluster up, data into fs3, train on HFReduce, get preempted, resume, finish.

    Uses the embedded single-machine config with its data under ~/.fireflyer/demo (or --data-dir).

    \b
    Example:
      haictl demo --ranks-per-node 2
    """
    from fireflyer.demo.run import run_demo

    target = (data_dir or Path("~/.fireflyer/demo")).expanduser().resolve()
    t0 = time.monotonic()
    try:
        res = run_demo(target, ranks_per_node=ranks_per_node, steps=steps, keep=keep, progress=click.echo)
    except FireflyerError as exc:
        raise click.ClickException(f"{exc}\n(logs under {target / 'logs'} and {target / 'agents'})") from None
    r = res.train
    click.echo("\nTraining result (read back from fs3:/demo/result.json):")
    click.echo(
        f"  {r['world_size']} ranks on {r['nodes']} nodes, {r['steps']} steps, resumed at step {r['resumed_from']}"
    )
    click.echo(f"  final loss {r['final_loss']:.4f}, held-out accuracy {r['heldout_accuracy']:.1%}")
    click.echo(f"  HFReduce allreduce of 32 MiB seen by the job: algbw {r['allreduce_32MiB_algbw_gbps']:.2f} GB/s, "
               f"busbw {r['allreduce_32MiB_busbw_gbps']:.2f} GB/s")  # fmt: skip
    click.echo("The preempting job's HFReduce probe:")
    click.echo("  " + "\n  ".join(res.probe_log.strip().splitlines()[-6:]))
    click.echo("Timings: " + ", ".join(f"{k} {v:.1f} s" for k, v in res.timings_s.items()) +
               f"; total {time.monotonic() - t0:.1f} s")  # fmt: skip
