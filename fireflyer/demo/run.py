"""``haictl demo``: the whole product on one machine, as a newcomer's first command.

Brings a cluster up, packs a data set into fs3, runs a 2-node data-parallel training job that reads
from fs3, allreduces with HFReduce overlapped with backward and checkpoints to fs3; preempts it with a
higher-priority job, lets it resume from its checkpoint and finish; prints what happened and the
bandwidth HFReduce saw; brings the cluster down.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fireflyer import cluster
from fireflyer.config import ClusterConfig, load_config
from fireflyer.demo.data import make_samples
from fireflyer.errors import FireflyerError


@dataclass
class DemoResult:
    """What the demo observed: the training result, the probe's table, the job histories, timings."""

    train: dict[str, Any]
    probe_log: str
    train_history: list[tuple[str, str]]
    timings_s: dict[str, float] = field(default_factory=dict)


def _last_step(log: str) -> int:
    steps = [int(m) for m in re.findall(r"^step (\d+) ", log, re.M)]
    return max(steps) if steps else -1


def run_demo(
    data_dir: Path,
    ranks_per_node: int = 2,
    steps: int = 150,
    samples: int = 8192,
    preempt_at_step: int = 40,
    min_step_s: float = 0.05,
    keep: bool = False,
    config: ClusterConfig | None = None,
    progress: Callable[[str], None] = print,
    timeout_s: float = 600.0,
    preempt: bool = True,
    host_prefix: Callable[[str], list[str]] | None = None,
) -> DemoResult:
    """Run the main job on a fresh cluster under ``data_dir``; raise FireflyerError if any stage fails.

    ``preempt=False`` lets the training job run to the end alone; ``host_prefix`` places services
    and agents on simulated hosts (see ``fireflyer.cluster.up``). ``min_step_s`` paces training steps
    (the toy model trains a step in milliseconds; a preemption needs a scheduler cycle and an agent
    heartbeat, ~1-2 s, to land, and must land before the job ends on any machine).
    """
    from fs3.client import FS3Client
    from fs3.dataset import pack_directory
    from haiplatform.scheduler_client import SchedulerClient

    cfg = config or load_config(None)
    cfg.data_dir = Path(data_dir).expanduser().resolve()
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    progress(f"[1/6] starting the cluster under {cfg.data_dir}")
    state = cluster.up(cfg, progress=lambda s: progress(f"      {s}"), host_prefix=host_prefix)
    timings["cluster_up"] = time.monotonic() - t0
    fs = None
    try:
        token = Path(state["admin_token_file"]).read_text().strip()
        sched = SchedulerClient(state["scheduler"], token)
        fs = FS3Client(state["mgmtd"])
        progress(f"      status page: {state['web']}")

        t = time.monotonic()
        local = cfg.data_dir / "demo-samples"
        local.mkdir(parents=True, exist_ok=True)
        for i, rec in enumerate(make_samples(samples)):
            (local / f"{i:06d}.bin").write_bytes(rec.tobytes())
        fs.makedirs("/demo")
        for old in ("/demo/ckpt.pt", "/demo/result.json", "/demo/train.ffr"):
            if fs.exists(old):
                fs.remove(old)
        nbytes = pack_directory(str(local), "/demo/train.ffr", client=fs)
        timings["pack"] = time.monotonic() - t
        progress(f"[2/6] packed {samples} samples ({nbytes / 1e6:.1f} MB) into fs3:/demo/train.ffr")

        nodes = len(cfg.agents)
        env = {"FS3_MGMTD": state["mgmtd"], "PYTHONUNBUFFERED": "1"}
        workdir = str(cfg.data_dir / "demo-work")
        Path(workdir).mkdir(exist_ok=True)
        train_id = sched.submit({
            "name": "demo-train", "priority": "LOW", "nodes": nodes, "ranks_per_node": ranks_per_node,
            "command": f"{sys.executable} -m fireflyer.demo.train --steps {steps} --min-step-s {min_step_s}",
            "workdir": workdir, "env": env,
        })  # fmt: skip
        progress(
            f"[3/6] submitted training job {train_id}: {nodes} nodes x {ranks_per_node} ranks, LOW priority"
        )
        t = time.monotonic()
        deadline = t + timeout_s
        watch = [train_id]
        probe_log = ""
        if preempt:
            _wait_for_step(sched, train_id, preempt_at_step, deadline, progress)
            timings["train_until_preempt"] = time.monotonic() - t
            t = time.monotonic()
            probe_id = sched.submit({
                "name": "demo-urgent-probe", "priority": "HIGH", "nodes": nodes, "ranks_per_node": 1,
                "command": f"{sys.executable} -m fireflyer.demo.probe", "workdir": workdir, "env": env,
            })  # fmt: skip
            progress(
                f"[4/6] submitted HIGH-priority job {probe_id} on all {nodes} nodes: job {train_id} must yield"
            )
            watch.append(probe_id)
        else:
            progress("[4/6] no preemption asked for: the training job runs alone")
        _wait_for_end(sched, watch, deadline, progress)
        timings["preempt_resume_finish" if preempt else "train"] = time.monotonic() - t
        for job_id in watch:
            job = sched.job(job_id)
            if job.state != "completed":
                raise FireflyerError(f"job {job_id} {job.state}: {job.reason}\n{_log(sched, job_id)}")
        info = sched.job(train_id)
        history = [(tr.to_state, tr.reason) for tr in info.history]
        if preempt:
            if info.suspend_count < 1:
                raise FireflyerError(f"training job {train_id} finished without being preempted: {history}")
            probe_log = _log(sched, watch[1])
            progress(f"[5/6] job {watch[1]} completed; job {train_id} was suspended {info.suspend_count}x, "
                     f"resumed from its checkpoint and completed (run {info.run_seq})")  # fmt: skip
        else:
            progress(f"[5/6] job {train_id} completed")
        with fs.open("/demo/result.json", "rb") as f:
            result = json.loads(f.read())
        return DemoResult(result, probe_log, history, timings)
    finally:
        if fs is not None:
            fs.close()
        if not keep:
            cluster.down(cfg.data_dir)
            progress("[6/6] cluster stopped (haictl down)")
        else:
            progress(f"[6/6] cluster left running: haictl status --data-dir {cfg.data_dir}")


def _log(sched: Any, job_id: int) -> str:
    return sched.tail_log(job_id, 0).data.decode(errors="replace")


def _wait_for_step(
    sched: Any, job_id: int, step: int, deadline: float, progress: Callable[[str], None]
) -> None:
    """Follow rank 0's log until the job reports ``step``, printing progress."""
    last = -1
    while True:
        info = sched.job(job_id)
        if info.state in ("failed", "cancelled", "completed"):
            raise FireflyerError(
                f"training job {job_id} ended {info.state} before step {step}: {info.reason}"
            )
        now = _last_step(_log(sched, job_id)) if info.started_at else -1  # no log before its first start
        if now != last and now >= 0:
            progress(f"      job {job_id} {info.state}, step {now}")
            last = now
        if now >= step:
            return
        if time.monotonic() > deadline:
            raise FireflyerError(f"training job {job_id} did not reach step {step} ({info.state})")
        time.sleep(0.2)


def _wait_for_end(sched: Any, job_ids: list[int], deadline: float, progress: Callable[[str], None]) -> None:
    """Wait until every job is terminal, printing each change of their states."""
    terminal = ("completed", "failed", "cancelled")
    seen: tuple[str, ...] = ()
    while True:
        states = tuple(sched.job(j).state for j in job_ids)
        if states != seen:
            progress("      " + " | ".join(f"job {j} {st:10}" for j, st in zip(job_ids, states, strict=True)))
            seen = states
        if all(st in terminal for st in states):
            return
        if time.monotonic() > deadline:
            raise FireflyerError(
                "jobs did not finish in time: "
                + ", ".join(f"{j} {st}" for j, st in zip(job_ids, states, strict=True))
            )
        time.sleep(0.3)
