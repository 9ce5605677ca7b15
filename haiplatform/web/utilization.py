"""A ring buffer of cluster utilization and queue length, sampled from the scheduler's memory."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from haiplatform.web.views import slots_used

if TYPE_CHECKING:
    from haiplatform.scheduler.core import SchedulerCore


@dataclass(frozen=True, slots=True)
class Sample:
    """Cluster totals at one instant (``t`` is unix time, seconds)."""

    t: float
    nodes_total: int
    nodes_up: int  # heartbeating, healthy and not drained: nodes jobs can use
    nodes_busy: int  # held by a running or suspending job
    nodes_down: int
    queue_length: int  # jobs in state queued
    jobs_running: int
    slots_total: int = 0  # GPU slots of the nodes that are up (heartbeating and healthy)
    slots_used: int = 0  # GPU slots held by running or suspending jobs' ranks

    def to_json(self) -> dict[str, float | int]:
        """The sample as a JSON object."""
        return asdict(self)


def take_sample(core: SchedulerCore, now: float | None = None) -> Sample:
    """Count nodes and jobs now (holds the scheduler lock for a moment, no database access)."""
    with core.lock:
        nodes = list(core.nodes.values())
        busy = set(core.jobs_on_nodes())
        used = slots_used(core.jobs)
        states = [j.state for j in core.jobs.values()]
    return Sample(
        t=now if now is not None else time.time(),
        nodes_total=len(nodes),
        nodes_up=sum(1 for n in nodes if n.schedulable),
        nodes_busy=sum(1 for n in nodes if n.name in busy),
        nodes_down=sum(1 for n in nodes if not (n.seen and n.up and n.healthy)),
        queue_length=states.count("queued"),
        jobs_running=states.count("running") + states.count("suspending"),
        slots_total=sum(n.slots for n in nodes if n.seen and n.up and n.healthy),
        slots_used=sum(used.values()),
    )


class UtilizationHistory:
    """Samples every ``interval_s`` into a bounded deque; in memory only (a restart starts afresh)."""

    def __init__(self, core: SchedulerCore, interval_s: float = 2.0, keep: int = 3600) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s: must be positive")
        self.core = core
        self.interval_s = interval_s
        self._samples: deque[Sample] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="web-utilization", daemon=True)

    def start(self) -> None:
        """Take the first sample now and keep sampling in a daemon thread."""
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def sample(self) -> Sample:
        """Take and keep one sample."""
        s = take_sample(self.core)
        with self._lock:
            self._samples.append(s)
        return s

    def since(self, t: float) -> list[Sample]:
        """Samples taken at or after unix time ``t``, oldest first."""
        with self._lock:
            return [s for s in self._samples if s.t >= t]

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()
