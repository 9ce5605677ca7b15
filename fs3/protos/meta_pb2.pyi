from fs3.protos import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class User(_message.Message):
    __slots__ = ("uid", "gid", "groups")
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    uid: int
    gid: int
    groups: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, uid: _Optional[int] = ..., gid: _Optional[int] = ..., groups: _Optional[_Iterable[int]] = ...) -> None: ...

class PathReq(_message.Message):
    __slots__ = ("user", "path", "follow")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    follow: bool
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., follow: _Optional[bool] = ...) -> None: ...

class InodeRsp(_message.Message):
    __slots__ = ("inode",)
    INODE_FIELD_NUMBER: _ClassVar[int]
    inode: _common_pb2.Inode
    def __init__(self, inode: _Optional[_Union[_common_pb2.Inode, _Mapping]] = ...) -> None: ...

class StatInodeReq(_message.Message):
    __slots__ = ("user", "inode_id")
    USER_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    user: User
    inode_id: int
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., inode_id: _Optional[int] = ...) -> None: ...

class MkdirReq(_message.Message):
    __slots__ = ("user", "path", "mode", "parents", "layout")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    PARENTS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    mode: int
    parents: bool
    layout: _common_pb2.Layout
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., mode: _Optional[int] = ..., parents: _Optional[bool] = ..., layout: _Optional[_Union[_common_pb2.Layout, _Mapping]] = ...) -> None: ...

class OpenReq(_message.Message):
    __slots__ = ("user", "path", "flags", "mode", "client_id")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    flags: int
    mode: int
    client_id: str
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., flags: _Optional[int] = ..., mode: _Optional[int] = ..., client_id: _Optional[str] = ...) -> None: ...

class OpenRsp(_message.Message):
    __slots__ = ("inode", "session_id", "truncated", "old_size", "lease_s")
    INODE_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    inode: _common_pb2.Inode
    session_id: int
    truncated: bool
    old_size: int
    lease_s: float
    def __init__(self, inode: _Optional[_Union[_common_pb2.Inode, _Mapping]] = ..., session_id: _Optional[int] = ..., truncated: _Optional[bool] = ..., old_size: _Optional[int] = ..., lease_s: _Optional[float] = ...) -> None: ...

class CloseReq(_message.Message):
    __slots__ = ("user", "inode_id", "session_id", "length", "wrote")
    USER_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    WROTE_FIELD_NUMBER: _ClassVar[int]
    user: User
    inode_id: int
    session_id: int
    length: int
    wrote: bool
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., inode_id: _Optional[int] = ..., session_id: _Optional[int] = ..., length: _Optional[int] = ..., wrote: _Optional[bool] = ...) -> None: ...

class CloseRsp(_message.Message):
    __slots__ = ("inode", "freed")
    INODE_FIELD_NUMBER: _ClassVar[int]
    FREED_FIELD_NUMBER: _ClassVar[int]
    inode: _common_pb2.Inode
    freed: bool
    def __init__(self, inode: _Optional[_Union[_common_pb2.Inode, _Mapping]] = ..., freed: _Optional[bool] = ...) -> None: ...

class RenewLeaseReq(_message.Message):
    __slots__ = ("client_id",)
    CLIENT_ID_FIELD_NUMBER: _ClassVar[int]
    client_id: str
    def __init__(self, client_id: _Optional[str] = ...) -> None: ...

class RenewLeaseRsp(_message.Message):
    __slots__ = ("lease_s", "sessions")
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    SESSIONS_FIELD_NUMBER: _ClassVar[int]
    lease_s: float
    sessions: int
    def __init__(self, lease_s: _Optional[float] = ..., sessions: _Optional[int] = ...) -> None: ...

class MknodReq(_message.Message):
    __slots__ = ("user", "path", "type", "mode", "rdev")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    RDEV_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    type: int
    mode: int
    rdev: int
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., type: _Optional[int] = ..., mode: _Optional[int] = ..., rdev: _Optional[int] = ...) -> None: ...

class XattrReq(_message.Message):
    __slots__ = ("user", "path", "follow", "name", "value", "flags")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    follow: bool
    name: bytes
    value: bytes
    flags: int
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., follow: _Optional[bool] = ..., name: _Optional[bytes] = ..., value: _Optional[bytes] = ..., flags: _Optional[int] = ...) -> None: ...

class XattrRsp(_message.Message):
    __slots__ = ("value", "names")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NAMES_FIELD_NUMBER: _ClassVar[int]
    value: bytes
    names: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, value: _Optional[bytes] = ..., names: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ListReq(_message.Message):
    __slots__ = ("user", "path", "with_inodes")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    WITH_INODES_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    with_inodes: bool
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., with_inodes: _Optional[bool] = ...) -> None: ...

class DirEntry(_message.Message):
    __slots__ = ("name", "inode_id", "type", "inode")
    NAME_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    INODE_FIELD_NUMBER: _ClassVar[int]
    name: str
    inode_id: int
    type: int
    inode: _common_pb2.Inode
    def __init__(self, name: _Optional[str] = ..., inode_id: _Optional[int] = ..., type: _Optional[int] = ..., inode: _Optional[_Union[_common_pb2.Inode, _Mapping]] = ...) -> None: ...

class ListRsp(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[DirEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[DirEntry, _Mapping]]] = ...) -> None: ...

class RenameReq(_message.Message):
    __slots__ = ("user", "src", "dst", "flags")
    USER_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    user: User
    src: str
    dst: str
    flags: int
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ..., flags: _Optional[int] = ...) -> None: ...

class UnlinkReq(_message.Message):
    __slots__ = ("user", "path", "directory")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    DIRECTORY_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    directory: bool
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., directory: _Optional[bool] = ...) -> None: ...

class UnlinkRsp(_message.Message):
    __slots__ = ("inode", "freed")
    INODE_FIELD_NUMBER: _ClassVar[int]
    FREED_FIELD_NUMBER: _ClassVar[int]
    inode: _common_pb2.Inode
    freed: bool
    def __init__(self, inode: _Optional[_Union[_common_pb2.Inode, _Mapping]] = ..., freed: _Optional[bool] = ...) -> None: ...

class SymlinkReq(_message.Message):
    __slots__ = ("user", "path", "target")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    target: str
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., target: _Optional[str] = ...) -> None: ...

class LinkReq(_message.Message):
    __slots__ = ("user", "src", "dst")
    USER_FIELD_NUMBER: _ClassVar[int]
    SRC_FIELD_NUMBER: _ClassVar[int]
    DST_FIELD_NUMBER: _ClassVar[int]
    user: User
    src: str
    dst: str
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., src: _Optional[str] = ..., dst: _Optional[str] = ...) -> None: ...

class TruncateReq(_message.Message):
    __slots__ = ("user", "path", "length", "inode_id")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    INODE_ID_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    length: int
    inode_id: int
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., length: _Optional[int] = ..., inode_id: _Optional[int] = ...) -> None: ...

class TruncateRsp(_message.Message):
    __slots__ = ("inode", "old_size")
    INODE_FIELD_NUMBER: _ClassVar[int]
    OLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    inode: _common_pb2.Inode
    old_size: int
    def __init__(self, inode: _Optional[_Union[_common_pb2.Inode, _Mapping]] = ..., old_size: _Optional[int] = ...) -> None: ...

class SetAttrReq(_message.Message):
    __slots__ = ("user", "path", "set_mode", "mode", "set_owner", "uid", "gid", "set_times", "atime", "mtime", "atime_ns", "mtime_ns", "atime_now", "mtime_now", "no_follow")
    USER_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SET_MODE_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    SET_OWNER_FIELD_NUMBER: _ClassVar[int]
    UID_FIELD_NUMBER: _ClassVar[int]
    GID_FIELD_NUMBER: _ClassVar[int]
    SET_TIMES_FIELD_NUMBER: _ClassVar[int]
    ATIME_FIELD_NUMBER: _ClassVar[int]
    MTIME_FIELD_NUMBER: _ClassVar[int]
    ATIME_NS_FIELD_NUMBER: _ClassVar[int]
    MTIME_NS_FIELD_NUMBER: _ClassVar[int]
    ATIME_NOW_FIELD_NUMBER: _ClassVar[int]
    MTIME_NOW_FIELD_NUMBER: _ClassVar[int]
    NO_FOLLOW_FIELD_NUMBER: _ClassVar[int]
    user: User
    path: str
    set_mode: bool
    mode: int
    set_owner: bool
    uid: int
    gid: int
    set_times: bool
    atime: float
    mtime: float
    atime_ns: int
    mtime_ns: int
    atime_now: bool
    mtime_now: bool
    no_follow: bool
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ..., path: _Optional[str] = ..., set_mode: _Optional[bool] = ..., mode: _Optional[int] = ..., set_owner: _Optional[bool] = ..., uid: _Optional[int] = ..., gid: _Optional[int] = ..., set_times: _Optional[bool] = ..., atime: _Optional[float] = ..., mtime: _Optional[float] = ..., atime_ns: _Optional[int] = ..., mtime_ns: _Optional[int] = ..., atime_now: _Optional[bool] = ..., mtime_now: _Optional[bool] = ..., no_follow: _Optional[bool] = ...) -> None: ...

class StatFsReq(_message.Message):
    __slots__ = ("user",)
    USER_FIELD_NUMBER: _ClassVar[int]
    user: User
    def __init__(self, user: _Optional[_Union[User, _Mapping]] = ...) -> None: ...

class StatFsRsp(_message.Message):
    __slots__ = ("inodes", "total_bytes", "free_bytes", "used_bytes")
    INODES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    FREE_BYTES_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    inodes: int
    total_bytes: int
    free_bytes: int
    used_bytes: int
    def __init__(self, inodes: _Optional[int] = ..., total_bytes: _Optional[int] = ..., free_bytes: _Optional[int] = ..., used_bytes: _Optional[int] = ...) -> None: ...
