"""HAI-Platform: time-sharing job scheduler with node-granular gang allocation and preemption.

Public API: ``haiplatform.job`` (the in-job suspend protocol), ``haiplatform.errors``,
``haiplatform.scheduler_client.SchedulerClient`` (typed gRPC client of the scheduler),
``haiplatform.scheduler.jobspec`` (the job-spec rules) and the ``scheduler`` / ``agent`` services.
"""

from haiplatform.errors import HaiError

__all__ = ["HaiError"]
