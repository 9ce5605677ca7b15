from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Priority(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PRIORITY_UNSPECIFIED: _ClassVar[Priority]
    LOW: _ClassVar[Priority]
    NORMAL: _ClassVar[Priority]
    ABOVE_NORMAL: _ClassVar[Priority]
    HIGH: _ClassVar[Priority]
PRIORITY_UNSPECIFIED: Priority
LOW: Priority
NORMAL: Priority
ABOVE_NORMAL: Priority
HIGH: Priority

class JobSpec(_message.Message):
    __slots__ = ("name", "command", "workdir", "env", "nodes", "ranks_per_node", "priority", "group", "time_limit_s", "argv", "depends_on", "begin_at", "hold", "array")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    RANKS_PER_NODE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    TIME_LIMIT_S_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    BEGIN_AT_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    ARRAY_FIELD_NUMBER: _ClassVar[int]
    name: str
    command: str
    workdir: str
    env: _containers.ScalarMap[str, str]
    nodes: int
    ranks_per_node: int
    priority: Priority
    group: str
    time_limit_s: float
    argv: _containers.RepeatedScalarFieldContainer[str]
    depends_on: _containers.RepeatedCompositeFieldContainer[Dependency]
    begin_at: float
    hold: bool
    array: str
    def __init__(self, name: _Optional[str] = ..., command: _Optional[str] = ..., workdir: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., nodes: _Optional[int] = ..., ranks_per_node: _Optional[int] = ..., priority: _Optional[_Union[Priority, str]] = ..., group: _Optional[str] = ..., time_limit_s: _Optional[float] = ..., argv: _Optional[_Iterable[str]] = ..., depends_on: _Optional[_Iterable[_Union[Dependency, _Mapping]]] = ..., begin_at: _Optional[float] = ..., hold: _Optional[bool] = ..., array: _Optional[str] = ...) -> None: ...

class Dependency(_message.Message):
    __slots__ = ("kind", "job_id")
    KIND_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    kind: str
    job_id: int
    def __init__(self, kind: _Optional[str] = ..., job_id: _Optional[int] = ...) -> None: ...

class JobRef(_message.Message):
    __slots__ = ("job_id",)
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    def __init__(self, job_id: _Optional[int] = ...) -> None: ...

class Transition(_message.Message):
    __slots__ = ("at", "from_state", "to_state", "reason")
    AT_FIELD_NUMBER: _ClassVar[int]
    FROM_STATE_FIELD_NUMBER: _ClassVar[int]
    TO_STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    at: float
    from_state: str
    to_state: str
    reason: str
    def __init__(self, at: _Optional[float] = ..., from_state: _Optional[str] = ..., to_state: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class JobInfo(_message.Message):
    __slots__ = ("job_id", "spec", "user", "state", "reason", "priority", "submitted_at", "started_at", "finished_at", "assigned_nodes", "run_seq", "exit_code", "suspend_count", "history", "pending_reason", "array_id", "array_index", "elapsed_s", "node_hours")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    SUBMITTED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_NODES_FIELD_NUMBER: _ClassVar[int]
    RUN_SEQ_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_COUNT_FIELD_NUMBER: _ClassVar[int]
    HISTORY_FIELD_NUMBER: _ClassVar[int]
    PENDING_REASON_FIELD_NUMBER: _ClassVar[int]
    ARRAY_ID_FIELD_NUMBER: _ClassVar[int]
    ARRAY_INDEX_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    NODE_HOURS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    spec: JobSpec
    user: str
    state: str
    reason: str
    priority: Priority
    submitted_at: float
    started_at: float
    finished_at: float
    assigned_nodes: _containers.RepeatedScalarFieldContainer[str]
    run_seq: int
    exit_code: int
    suspend_count: int
    history: _containers.RepeatedCompositeFieldContainer[Transition]
    pending_reason: str
    array_id: int
    array_index: int
    elapsed_s: float
    node_hours: float
    def __init__(self, job_id: _Optional[int] = ..., spec: _Optional[_Union[JobSpec, _Mapping]] = ..., user: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., submitted_at: _Optional[float] = ..., started_at: _Optional[float] = ..., finished_at: _Optional[float] = ..., assigned_nodes: _Optional[_Iterable[str]] = ..., run_seq: _Optional[int] = ..., exit_code: _Optional[int] = ..., suspend_count: _Optional[int] = ..., history: _Optional[_Iterable[_Union[Transition, _Mapping]]] = ..., pending_reason: _Optional[str] = ..., array_id: _Optional[int] = ..., array_index: _Optional[int] = ..., elapsed_s: _Optional[float] = ..., node_hours: _Optional[float] = ...) -> None: ...

class SubmitReply(_message.Message):
    __slots__ = ("job_id", "job_ids")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, job_id: _Optional[int] = ..., job_ids: _Optional[_Iterable[int]] = ...) -> None: ...

class ListJobsRequest(_message.Message):
    __slots__ = ("states", "user", "limit", "since", "until")
    STATES_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    states: _containers.RepeatedScalarFieldContainer[str]
    user: str
    limit: int
    since: float
    until: float
    def __init__(self, states: _Optional[_Iterable[str]] = ..., user: _Optional[str] = ..., limit: _Optional[int] = ..., since: _Optional[float] = ..., until: _Optional[float] = ...) -> None: ...

class ListJobsReply(_message.Message):
    __slots__ = ("jobs",)
    JOBS_FIELD_NUMBER: _ClassVar[int]
    jobs: _containers.RepeatedCompositeFieldContainer[JobInfo]
    def __init__(self, jobs: _Optional[_Iterable[_Union[JobInfo, _Mapping]]] = ...) -> None: ...

class NodeInfo(_message.Message):
    __slots__ = ("name", "slots", "state", "healthy", "drained", "reason", "last_heartbeat", "job_ids", "address")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    DRAINED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    name: str
    slots: int
    state: str
    healthy: bool
    drained: bool
    reason: str
    last_heartbeat: float
    job_ids: _containers.RepeatedScalarFieldContainer[int]
    address: str
    def __init__(self, name: _Optional[str] = ..., slots: _Optional[int] = ..., state: _Optional[str] = ..., healthy: _Optional[bool] = ..., drained: _Optional[bool] = ..., reason: _Optional[str] = ..., last_heartbeat: _Optional[float] = ..., job_ids: _Optional[_Iterable[int]] = ..., address: _Optional[str] = ...) -> None: ...

class ListNodesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListNodesReply(_message.Message):
    __slots__ = ("nodes",)
    NODES_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeInfo]
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeInfo, _Mapping]]] = ...) -> None: ...

class NodeRef(_message.Message):
    __slots__ = ("name", "reason")
    NAME_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    name: str
    reason: str
    def __init__(self, name: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class TailLogRequest(_message.Message):
    __slots__ = ("job_id", "rank", "offset", "max_bytes")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    rank: int
    offset: int
    max_bytes: int
    def __init__(self, job_id: _Optional[int] = ..., rank: _Optional[int] = ..., offset: _Optional[int] = ..., max_bytes: _Optional[int] = ...) -> None: ...

class TailLogReply(_message.Message):
    __slots__ = ("data", "next_offset", "job_done", "node")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    JOB_DONE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    next_offset: int
    job_done: bool
    node: str
    def __init__(self, data: _Optional[bytes] = ..., next_offset: _Optional[int] = ..., job_done: _Optional[bool] = ..., node: _Optional[str] = ...) -> None: ...

class Quota(_message.Message):
    __slots__ = ("scope", "name", "priority", "max_nodes")
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    MAX_NODES_FIELD_NUMBER: _ClassVar[int]
    scope: str
    name: str
    priority: Priority
    max_nodes: int
    def __init__(self, scope: _Optional[str] = ..., name: _Optional[str] = ..., priority: _Optional[_Union[Priority, str]] = ..., max_nodes: _Optional[int] = ...) -> None: ...

class QuotaList(_message.Message):
    __slots__ = ("quotas",)
    QUOTAS_FIELD_NUMBER: _ClassVar[int]
    quotas: _containers.RepeatedCompositeFieldContainer[Quota]
    def __init__(self, quotas: _Optional[_Iterable[_Union[Quota, _Mapping]]] = ...) -> None: ...

class Empty(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AddUserRequest(_message.Message):
    __slots__ = ("name", "group", "admin")
    NAME_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    name: str
    group: str
    admin: bool
    def __init__(self, name: _Optional[str] = ..., group: _Optional[str] = ..., admin: _Optional[bool] = ...) -> None: ...

class AddUserReply(_message.Message):
    __slots__ = ("token",)
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    token: str
    def __init__(self, token: _Optional[str] = ...) -> None: ...

class WhoAmIReply(_message.Message):
    __slots__ = ("user", "group", "admin")
    USER_FIELD_NUMBER: _ClassVar[int]
    GROUP_FIELD_NUMBER: _ClassVar[int]
    ADMIN_FIELD_NUMBER: _ClassVar[int]
    user: str
    group: str
    admin: bool
    def __init__(self, user: _Optional[str] = ..., group: _Optional[str] = ..., admin: _Optional[bool] = ...) -> None: ...
