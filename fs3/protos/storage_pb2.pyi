from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class UpdateType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    UPDATE_TYPE_UNSPECIFIED: _ClassVar[UpdateType]
    WRITE: _ClassVar[UpdateType]
    FULL_REPLACE: _ClassVar[UpdateType]
    TRUNCATE: _ClassVar[UpdateType]
    REMOVE: _ClassVar[UpdateType]
UPDATE_TYPE_UNSPECIFIED: UpdateType
WRITE: UpdateType
FULL_REPLACE: UpdateType
TRUNCATE: UpdateType
REMOVE: UpdateType

class ChunkId(_message.Message):
    __slots__ = ("inode_id", "index")
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    inode_id: int
    index: int
    def __init__(self, inode_id: _Optional[int] = ..., index: _Optional[int] = ...) -> None: ...

class UpdateReq(_message.Message):
    __slots__ = ("chain_id", "chain_version", "target_id", "chunk", "type", "offset", "length", "chunk_size", "payload_crc32c", "update_version", "from_client", "data", "max_file_size", "sync")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_CRC32C_FIELD_NUMBER: _ClassVar[int]
    UPDATE_VERSION_FIELD_NUMBER: _ClassVar[int]
    FROM_CLIENT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    MAX_FILE_SIZE_FIELD_NUMBER: _ClassVar[int]
    SYNC_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    target_id: int
    chunk: ChunkId
    type: UpdateType
    offset: int
    length: int
    chunk_size: int
    payload_crc32c: int
    update_version: int
    from_client: bool
    data: bytes
    max_file_size: int
    sync: bool
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., target_id: _Optional[int] = ..., chunk: _Optional[_Union[ChunkId, _Mapping]] = ..., type: _Optional[_Union[UpdateType, str]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., chunk_size: _Optional[int] = ..., payload_crc32c: _Optional[int] = ..., update_version: _Optional[int] = ..., from_client: _Optional[bool] = ..., data: _Optional[bytes] = ..., max_file_size: _Optional[int] = ..., sync: _Optional[bool] = ...) -> None: ...

class UpdateRsp(_message.Message):
    __slots__ = ("committed_version", "chunk_crc32c", "chunk_length", "need_full")
    COMMITTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_CRC32C_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    NEED_FULL_FIELD_NUMBER: _ClassVar[int]
    committed_version: int
    chunk_crc32c: int
    chunk_length: int
    need_full: bool
    def __init__(self, committed_version: _Optional[int] = ..., chunk_crc32c: _Optional[int] = ..., chunk_length: _Optional[int] = ..., need_full: _Optional[bool] = ...) -> None: ...

class ReadReq(_message.Message):
    __slots__ = ("target_id", "chunk", "offset", "length", "relaxed", "chain_version")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    RELAXED_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    chunk: ChunkId
    offset: int
    length: int
    relaxed: bool
    chain_version: int
    def __init__(self, target_id: _Optional[int] = ..., chunk: _Optional[_Union[ChunkId, _Mapping]] = ..., offset: _Optional[int] = ..., length: _Optional[int] = ..., relaxed: _Optional[bool] = ..., chain_version: _Optional[int] = ...) -> None: ...

class ReadRsp(_message.Message):
    __slots__ = ("found", "committed_version", "chunk_length", "data")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    found: bool
    committed_version: int
    chunk_length: int
    data: bytes
    def __init__(self, found: _Optional[bool] = ..., committed_version: _Optional[int] = ..., chunk_length: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class BatchReadReq(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ReadReq]
    def __init__(self, items: _Optional[_Iterable[_Union[ReadReq, _Mapping]]] = ...) -> None: ...

class BatchReadRsp(_message.Message):
    __slots__ = ("item", "found", "committed_version", "chunk_length", "data", "error")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    item: int
    found: bool
    committed_version: int
    chunk_length: int
    data: bytes
    error: str
    def __init__(self, item: _Optional[int] = ..., found: _Optional[bool] = ..., committed_version: _Optional[int] = ..., chunk_length: _Optional[int] = ..., data: _Optional[bytes] = ..., error: _Optional[str] = ...) -> None: ...

class ChunkMeta(_message.Message):
    __slots__ = ("chunk", "committed_version", "pending_version", "crc32c", "length", "chain_version")
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    COMMITTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    PENDING_VERSION_FIELD_NUMBER: _ClassVar[int]
    CRC32C_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    chunk: ChunkId
    committed_version: int
    pending_version: int
    crc32c: int
    length: int
    chain_version: int
    def __init__(self, chunk: _Optional[_Union[ChunkId, _Mapping]] = ..., committed_version: _Optional[int] = ..., pending_version: _Optional[int] = ..., crc32c: _Optional[int] = ..., length: _Optional[int] = ..., chain_version: _Optional[int] = ...) -> None: ...

class DumpChunkMetaReq(_message.Message):
    __slots__ = ("target_id",)
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    def __init__(self, target_id: _Optional[int] = ...) -> None: ...

class DumpChunkMetaRsp(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkMeta]
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkMeta, _Mapping]]] = ...) -> None: ...

class RemoveRangeReq(_message.Message):
    __slots__ = ("chain_id", "chain_version", "target_id", "inode_id", "first_index")
    CHAIN_ID_FIELD_NUMBER: _ClassVar[int]
    CHAIN_VERSION_FIELD_NUMBER: _ClassVar[int]
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    FIRST_INDEX_FIELD_NUMBER: _ClassVar[int]
    chain_id: int
    chain_version: int
    target_id: int
    inode_id: int
    first_index: int
    def __init__(self, chain_id: _Optional[int] = ..., chain_version: _Optional[int] = ..., target_id: _Optional[int] = ..., inode_id: _Optional[int] = ..., first_index: _Optional[int] = ...) -> None: ...

class RemoveRangeRsp(_message.Message):
    __slots__ = ("removed",)
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    removed: int
    def __init__(self, removed: _Optional[int] = ...) -> None: ...

class TargetSpaceReq(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TargetSpace(_message.Message):
    __slots__ = ("target_id", "total_bytes", "free_bytes", "chunks", "reserve_bytes", "read_only", "corrupt_chunks", "repaired_chunks", "unrepaired_chunks", "scrubbed_bytes")
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    RESERVE_BYTES_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    CORRUPT_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    REPAIRED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    UNREPAIRED_CHUNKS_FIELD_NUMBER: _ClassVar[int]
    SCRUBBED_BYTES_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    total_bytes: int
    free_bytes: int
    chunks: int
    reserve_bytes: int
    read_only: bool
    corrupt_chunks: int
    repaired_chunks: int
    unrepaired_chunks: int
    scrubbed_bytes: int
    def __init__(self, target_id: _Optional[int] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., chunks: _Optional[int] = ..., reserve_bytes: _Optional[int] = ..., read_only: _Optional[bool] = ..., corrupt_chunks: _Optional[int] = ..., repaired_chunks: _Optional[int] = ..., unrepaired_chunks: _Optional[int] = ..., scrubbed_bytes: _Optional[int] = ...) -> None: ...

class TargetSpaceRsp(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[TargetSpace]
    def __init__(self, targets: _Optional[_Iterable[_Union[TargetSpace, _Mapping]]] = ...) -> None: ...
