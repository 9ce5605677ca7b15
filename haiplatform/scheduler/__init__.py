"""The scheduler service (gRPC), its pure policy and its SQL store."""

from haiplatform.scheduler.policy import (
    Decisions,
    NodeView,
    PolicyConfig,
    Priority,
    QueuedJob,
    RunningJob,
    schedule,
)
from haiplatform.scheduler.server import SchedulerConfig, SchedulerCore, serve
from haiplatform.scheduler.store import JobRecord, Store

__all__ = [
    "Decisions", "JobRecord", "NodeView", "PolicyConfig", "Priority", "QueuedJob", "RunningJob",
    "SchedulerConfig", "SchedulerCore", "Store", "schedule", "serve",
]  # fmt: skip
