"""The scheduler's web status page, JSON API (OpenAPI at ``/api/openapi.json``) and ``/metrics``.

Started inside the scheduler process by ``python -m haiplatform.scheduler --web-port PORT``.
"""

from haiplatform.web.fs3panel import Fs3Monitor
from haiplatform.web.metrics import SchedulerCollector
from haiplatform.web.openapi import openapi_document
from haiplatform.web.server import WebConfig, WebServer
from haiplatform.web.utilization import Sample, UtilizationHistory
from haiplatform.web.views import job_json, node_state

__all__ = [
    "Fs3Monitor", "Sample", "SchedulerCollector", "UtilizationHistory", "WebConfig", "WebServer", "job_json",
    "node_state", "openapi_document",
]  # fmt: skip
