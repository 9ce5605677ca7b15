"""Prometheus collector of the scheduler's state: node states, jobs by state, queue length, web requests.

Values are read from the scheduler's memory at scrape time (no database access), so a scrape
always shows the state the scheduler is acting on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haiplatform.scheduler.store import ACTIVE_STATES

if TYPE_CHECKING:
    from haiplatform.scheduler.core import SchedulerCore
    from haiplatform.web.server import WebServer


class SchedulerCollector(Collector):
    """Yields ``hai_*`` metric families for one scheduler (and its web server's request counts)."""

    def __init__(self, core: SchedulerCore, web: WebServer | None = None) -> None:
        self.core = core
        self.web = web

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus_client on every scrape."""
        from haiplatform.web.server import NODE_STATES, node_state

        with self.core.lock:
            on = self.core.jobs_on_nodes()
            nodes = [(n.name, node_state(n, on.get(n.name, [])), n.slots) for n in self.core.nodes.values()]
            job_states = [j.state for j in self.core.jobs.values()]
            cycles = sorted(self.core.cycle_times_s)

        by_state = GaugeMetricFamily("hai_nodes", "Nodes by state", labels=["state"])
        for state in NODE_STATES:
            by_state.add_metric([state], sum(1 for _, s, _ in nodes if s == state))
        yield by_state

        per_node = GaugeMetricFamily(
            "hai_node_state", "1 for the state each node is in (idle, busy, ...)", labels=["node", "state"]
        )
        for name, state, _ in sorted(nodes):
            per_node.add_metric([name, state], 1)
        yield per_node

        slots = GaugeMetricFamily("hai_node_slots", "GPU slots per node", labels=["node"])
        for name, _, n_slots in sorted(nodes):
            slots.add_metric([name], n_slots)
        yield slots

        jobs = GaugeMetricFamily("hai_jobs", "Jobs not yet finished, by state", labels=["state"])
        for state in sorted(ACTIVE_STATES):
            jobs.add_metric([state], job_states.count(state))
        yield jobs

        yield GaugeMetricFamily(
            "hai_queue_length", "Jobs waiting for nodes", value=job_states.count("queued")
        )

        if cycles:
            policy = GaugeMetricFamily(
                "hai_scheduler_policy_seconds",
                "Time the scheduling policy took, over the last 1000 cycles",
                labels=["quantile"],
            )
            for q in (0.5, 0.99, 1.0):
                policy.add_metric([str(q)], cycles[min(len(cycles) - 1, int(q * len(cycles)))])
            yield policy

        if self.web is not None:
            reqs = CounterMetricFamily(
                "hai_web_requests",
                "HTTP requests to the status page and API",
                labels=["route", "method", "code"],
            )
            with self.web._counts_lock:
                counts = sorted(self.web.request_counts.items())
            for (route, method, code), n in counts:
                reqs.add_metric([route, method, str(code)], n)
            yield reqs
