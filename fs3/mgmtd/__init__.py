"""mgmtd: cluster membership with heartbeat leases, the chain table and target-state transitions."""

from fs3.mgmtd.service import MgmtdService

__all__ = ["MgmtdService"]
