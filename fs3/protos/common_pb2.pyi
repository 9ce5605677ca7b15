from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TargetState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TARGET_STATE_UNSPECIFIED: _ClassVar[TargetState]
    SERVING: _ClassVar[TargetState]
    SYNCING: _ClassVar[TargetState]
    WAITING: _ClassVar[TargetState]
    LASTSRV: _ClassVar[TargetState]
    OFFLINE: _ClassVar[TargetState]

class LocalState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LOCAL_STATE_UNSPECIFIED: _ClassVar[LocalState]
    UPTODATE: _ClassVar[LocalState]
    ONLINE: _ClassVar[LocalState]
TARGET_STATE_UNSPECIFIED: TargetState
SERVING: TargetState
SYNCING: TargetState
WAITING: TargetState
LASTSRV: TargetState
OFFLINE: TargetState
LOCAL_STATE_UNSPECIFIED: LocalState
UPTODATE: LocalState
ONLINE: LocalState

class ChainTarget(_message.Message):
    __slots__ = ("target_id", "node_id", "state", "total_bytes", "free_bytes", "read_only")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    node_id: int
    state: TargetState
    total_bytes: int
    free_bytes: int
    read_only: bool
    def __init__(self, target_id: _Optional[int] = ..., node_id: _Optional[int] = ..., state: _Optional[_Union[TargetState, str]] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., read_only: _Optional[bool] = ...) -> None: ...

class Chain(_message.Message):
    __slots__ = ("chain_id", "version", "targets")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    version: int
    targets: _containers.RepeatedCompositeFieldContainer[ChainTarget]
    def __init__(self, chain_id: _Optional[int] = ..., version: _Optional[int] = ..., targets: _Optional[_Iterable[_Union[ChainTarget, _Mapping]]] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("node_id", "address", "role", "alive", "last_heartbeat_s", "data_address")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_S_FIELD_NUMBER: _ClassVar[int]
    DATA_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    node_id: int
    address: str
    role: str
    alive: bool
    last_heartbeat_s: float
    data_address: str
    def __init__(self, node_id: _Optional[int] = ..., address: _Optional[str] = ..., role: _Optional[str] = ..., alive: _Optional[bool] = ..., last_heartbeat_s: _Optional[float] = ..., data_address: _Optional[str] = ...) -> None: ...

class RoutingInfo(_message.Message):
    __slots__ = ("routing_version", "chains", "nodes", "chunk_size", "stripe", "max_file_size")
    ROUTING_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRIPE_FIELD_NUMBER: _ClassVar[int]
    MAX_FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    routing_version: int
    chains: _containers.RepeatedCompositeFieldContainer[Chain]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    chunk_size: int
    stripe: int
    max_file_size: int
    def __init__(self, routing_version: _Optional[int] = ..., chains: _Optional[_Iterable[_Union[Chain, _Mapping]]] = ..., nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ..., chunk_size: _Optional[int] = ..., stripe: _Optional[int] = ..., max_file_size: _Optional[int] = ...) -> None: ...

class Layout(_message.Message):
    __slots__ = ("chunk_size", "stripe", "chains", "seed")
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    STRIPE_FIELD_NUMBER: _ClassVar[int]
    CHAINS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    chunk_size: int
    stripe: int
    chains: _containers.RepeatedScalarFieldContainer[int]
    seed: int
    def __init__(self, chunk_size: _Optional[int] = ..., stripe: _Optional[int] = ..., chains: _Optional[_Iterable[int]] = ..., seed: _Optional[int] = ...) -> None: ...

class Inode(_message.Message):
    __slots__ = ("inode_id", "type", "mode", "uid", "gid", "nlink", "size", "atime", "mtime", "ctime", "layout", "symlink_target", "parent_id", "atime_ns", "mtime_ns", "ctime_ns", "rdev")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    NLINK_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    ATIME_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    CTIME_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    SYMLINK_TARGET_FIELD_NUMBER: _ClassVar[int]
    PARENT_ID_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    CTIME_NS_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    type: int
    mode: int
    uid: int
    gid: int
    nlink: int
    size: int
    atime: float
    mtime: float
    ctime: float
    layout: Layout
    symlink_target: str
    parent_id: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    rdev: int
    def __init__(self, inode_id: _Optional[int] = ..., type: _Optional[int] = ..., mode: _Optional[int] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., nlink: _Optional[int] = ..., size: _Optional[int] = ..., atime: _Optional[float] = ..., mtime: _Optional[float] = ..., ctime: _Optional[float] = ..., layout: _Optional[_Union[Layout, _Mapping]] = ..., symlink_target: _Optional[str] = ..., parent_id: _Optional[int] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., ctime_ns: _Optional[int] = ..., rdev: _Optional[int] = ...) -> None: ...
