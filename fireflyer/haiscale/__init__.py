"""HaiScale: data-parallel training on HFReduce, with the allreduce overlapped with backward.

Public API:
- ``DistributedDataParallel``: bucketed asynchronous gradient allreduce (HFReduce by default).
- ``HFReduceCommunicator`` / ``ProcessGroupCommunicator``: what the DDP reduces through.
- ``hfreduce_hook``: HFReduce as a comm hook of stock torch DDP (``ddp.register_comm_hook(None, hfreduce_hook)``).
- ``ProcessGroupHFReduce``: the ``torch.distributed`` backend ``"hfreduce"`` (registered on import), so
  ``init_process_group(backend="hfreduce")`` gives every collective stock DDP and FSDP2 use, over HFReduce.
- ``CudaStagingCommunicator``: CUDA gradients staged device→pinned shared host memory on side streams
  (copy engines only, no kernel of ours), reduced by HFReduce chunk by chunk, copied back.
- ``checkpoint``: ``save_async`` (snapshot to host now, write in the background) and ``load``, local or fs3.
- ``errors``: ``HaiScaleError`` and its subclasses.
"""

from fireflyer.haiscale import checkpoint
from fireflyer.haiscale._comm import Communicator, HFReduceCommunicator, ProcessGroupCommunicator
from fireflyer.haiscale.backend import ProcessGroupHFReduce
from fireflyer.haiscale.checkpoint import CheckpointHandle
from fireflyer.haiscale.comm_hook import hfreduce_hook
from fireflyer.haiscale.cuda import CudaStagingCommunicator
from fireflyer.haiscale.ddp import DistributedDataParallel
from fireflyer.haiscale.errors import (
    BackwardIncompleteError,
    CommunicationError,
    HaiScaleError,
    UnusedParametersError,
)

__all__ = [
    "BackwardIncompleteError",
    "CheckpointHandle",
    "CommunicationError",
    "Communicator",
    "CudaStagingCommunicator",
    "DistributedDataParallel",
    "HFReduceCommunicator",
    "HaiScaleError",
    "ProcessGroupCommunicator",
    "ProcessGroupHFReduce",
    "UnusedParametersError",
    "checkpoint",
    "hfreduce_hook",
]
