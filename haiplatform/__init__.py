"""HAI-Platform: time-sharing job scheduler with node-granular gang allocation and preemption.

Public API: ``haiplatform.client`` (in-job suspend protocol), ``haiplatform.errors``,
``haiplatform.api.SchedulerClient`` (typed gRPC client), and the ``scheduler`` / ``agent`` services.
"""

from haiplatform.errors import HaiError

__all__ = ["HaiError"]
