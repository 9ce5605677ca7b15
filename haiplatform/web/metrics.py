"""Prometheus collector of the scheduler's state: node states, jobs by state, queue length, web requests.

Values are read from the scheduler's memory at scrape time (no database access), so a scrape
always shows the state the scheduler is acting on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from haiplatform.scheduler.store import ACTIVE_STATES
from haiplatform.web.views import NODE_STATES, node_state, slots_used

if TYPE_CHECKING:
    from haiplatform.scheduler.core import SchedulerCore

# (route, method, HTTP status) -> requests served, as the web server counts them.
RequestCounts = Callable[[], dict[tuple[str, str, int], int]]


class SchedulerCollector(Collector):
    """Yields ``hai_*`` metric families for one scheduler (and its web server's request counts)."""

    def __init__(self, core: SchedulerCore, request_counts: RequestCounts | None = None) -> None:
        self.core = core
        self.request_counts = request_counts

    def collect(self) -> Iterator[Metric]:
        """Called by prometheus_client on every scrape."""
        with self.core.lock:
            on = self.core.jobs_on_nodes()
            used = slots_used(self.core.jobs)
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

        in_use = GaugeMetricFamily(
            "hai_node_slots_used", "GPU slots held by running or suspending jobs' ranks", labels=["node"]
        )
        for name, _, _ in sorted(nodes):
            in_use.add_metric([name], used.get(name, 0))
        yield in_use

        jobs = GaugeMetricFamily("hai_jobs", "Jobs not yet finished, by state", labels=["state"])
        for state in sorted(ACTIVE_STATES):
            jobs.add_metric([state], job_states.count(state))
        yield jobs

        yield GaugeMetricFamily(
            "hai_queue_length", "Jobs waiting for nodes", value=job_states.count("queued")
        )

        if cycles:
            # A gauge, so its label may not be "quantile" (reserved for summaries): stat="p50|p99|max".
            policy = GaugeMetricFamily(
                "hai_scheduler_policy_seconds",
                "Time the scheduling policy took, over the last 1000 cycles (p50, p99 and max)",
                labels=["stat"],
            )
            for stat, q in (("p50", 0.5), ("p99", 0.99), ("max", 1.0)):
                policy.add_metric([stat], cycles[min(len(cycles) - 1, int(q * len(cycles)))])
            yield policy

        if self.request_counts is not None:
            reqs = CounterMetricFamily(
                "hai_web_requests",
                "HTTP requests to the status page and API",
                labels=["route", "method", "code"],
            )
            for (route, method, code), n in sorted(self.request_counts().items()):
                reqs.add_metric([route, method, str(code)], n)
            yield reqs
