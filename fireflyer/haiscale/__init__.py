"""HaiScale: data-parallel training on HFReduce, with the allreduce overlapped with backward.

Public API:
- ``DistributedDataParallel``: bucketed asynchronous gradient allreduce (HFReduce by default).
- ``HFReduceCommunicator`` / ``ProcessGroupCommunicator``: what the DDP reduces through.
- ``errors``: ``HaiScaleError`` and its subclasses.
"""

from fireflyer.haiscale._comm import Communicator, HFReduceCommunicator, ProcessGroupCommunicator
from fireflyer.haiscale.ddp import DistributedDataParallel
from fireflyer.haiscale.errors import (
    BackwardIncompleteError,
    CommunicationError,
    HaiScaleError,
    UnusedParametersError,
)

__all__ = [
    "BackwardIncompleteError",
    "CommunicationError",
    "Communicator",
    "DistributedDataParallel",
    "HFReduceCommunicator",
    "HaiScaleError",
    "ProcessGroupCommunicator",
    "UnusedParametersError",
]
