"""The scheduler service (gRPC), its pure policy and its SQL store."""

from haiplatform.scheduler.core import SchedulerConfig, SchedulerCore
from haiplatform.scheduler.policy import (
    Decisions,
    NodeView,
    PolicyConfig,
    Priority,
    QueuedJob,
    RunningJob,
    schedule,
)
from haiplatform.scheduler.service import serve
from haiplatform.scheduler.store import JobRecord, Store

__all__ = [
    "Decisions", "JobRecord", "NodeView", "PolicyConfig", "Priority", "QueuedJob", "RunningJob",
    "SchedulerConfig", "SchedulerCore", "Store", "schedule", "serve",
]  # fmt: skip
