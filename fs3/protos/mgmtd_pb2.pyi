from fs3.protos import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TargetReport(_message.Message):
    __slots__ = ("target_id", "local_state", "total_bytes", "free_bytes", "read_only")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    LOCAL_STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    local_state: _common_pb2.LocalState
    total_bytes: int
    free_bytes: int
    read_only: bool
    def __init__(self, target_id: _Optional[int] = ..., local_state: _Optional[_Union[_common_pb2.LocalState, str]] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., read_only: _Optional[bool] = ...) -> None: ...

class HeartbeatReq(_message.Message):
    __slots__ = ("node_id", "address", "role", "restarted", "targets", "data_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    RESTARTED_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    DATA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    address: str
    role: str
    restarted: bool
    targets: _containers.RepeatedCompositeFieldContainer[TargetReport]
    data_address: str
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ..., role: _Optional[str] = ..., restarted: _Optional[bool] = ..., targets: _Optional[_Iterable[_Union[TargetReport, _Mapping]]] = ..., data_address: _Optional[str] = ...) -> None: ...

class HeartbeatRsp(_message.Message):
    __slots__ = ("routing", "lease_s")
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingInfo
    lease_s: float
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingInfo, _Mapping]] = ..., lease_s: _Optional[float] = ...) -> None: ...

class GetRoutingReq(_message.Message):
    __slots__ = ("known_version",)
    KNOWN_VERSION_FIELD_NUMBER: _ClassVar[int]
    known_version: int
    def __init__(self, known_version: _Optional[int] = ...) -> None: ...

class GetRoutingRsp(_message.Message):
    __slots__ = ("routing",)
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingInfo
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingInfo, _Mapping]] = ...) -> None: ...

class ChainSpec(_message.Message):
    __slots__ = ("chain_id", "target_ids", "node_ids")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_IDS_FIELD_NUMBER: _ClassVar[int]
    NODE_IDS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    target_ids: _containers.RepeatedScalarFieldContainer[int]
    node_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, chain_id: _Optional[int] = ..., target_ids: _Optional[_Iterable[int]] = ..., node_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class SetChainTableReq(_message.Message):
    __slots__ = ("chains", "chunk_size", "stripe", "max_file_size")
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRIPE_FIELD_NUMBER: _ClassVar[int]
    MAX_FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    chains: _containers.RepeatedCompositeFieldContainer[ChainSpec]
    chunk_size: int
    stripe: int
    max_file_size: int
    def __init__(self, chains: _Optional[_Iterable[_Union[ChainSpec, _Mapping]]] = ..., chunk_size: _Optional[int] = ..., stripe: _Optional[int] = ..., max_file_size: _Optional[int] = ...) -> None: ...

class SetChainTableRsp(_message.Message):
    __slots__ = ("routing",)
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingInfo
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingInfo, _Mapping]] = ...) -> None: ...

class SyncDoneReq(_message.Message):
    __slots__ = ("chain_id", "target_id", "chain_version")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    target_id: int
    chain_version: int
    def __init__(self, chain_id: _Optional[int] = ..., target_id: _Optional[int] = ..., chain_version: _Optional[int] = ...) -> None: ...

class SyncDoneRsp(_message.Message):
    __slots__ = ("routing",)
    ROUTING_FIELD_NUMBER: _ClassVar[int]
    routing: _common_pb2.RoutingInfo
    def __init__(self, routing: _Optional[_Union[_common_pb2.RoutingInfo, _Mapping]] = ...) -> None: ...
