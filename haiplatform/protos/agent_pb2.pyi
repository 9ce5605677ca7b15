from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RankStatus(_message.Message):
    __slots__ = ("job_id", "run_seq", "rank", "running", "exit_code", "suspend_ready", "reason", "fenced")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_SEQ_FIELD_NUMBER: _ClassVar[int]
    RANK_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_READY_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FENCED_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    run_seq: int
    rank: int
    running: bool
    exit_code: int
    suspend_ready: bool
    reason: str
    fenced: bool
    def __init__(self, job_id: _Optional[int] = ..., run_seq: _Optional[int] = ..., rank: _Optional[int] = ..., running: _Optional[bool] = ..., exit_code: _Optional[int] = ..., suspend_ready: _Optional[bool] = ..., reason: _Optional[str] = ..., fenced: _Optional[bool] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("node", "slots", "log_address", "host", "spare_ports", "healthy", "health_reason", "ranks", "agent_started_at")
    NODE_FIELD_NUMBER: _ClassVar[int]
    SLOTS_FIELD_NUMBER: _ClassVar[int]
    LOG_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HOST_FIELD_NUMBER: _ClassVar[int]
    SPARE_PORTS_FIELD_NUMBER: _ClassVar[int]
    HEALTHY_FIELD_NUMBER: _ClassVar[int]
    HEALTH_REASON_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    AGENT_STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    node: str
    slots: int
    log_address: str
    host: str
    spare_ports: _containers.RepeatedScalarFieldContainer[int]
    healthy: bool
    health_reason: str
    ranks: _containers.RepeatedCompositeFieldContainer[RankStatus]
    agent_started_at: float
    def __init__(self, node: _Optional[str] = ..., slots: _Optional[int] = ..., log_address: _Optional[str] = ..., host: _Optional[str] = ..., spare_ports: _Optional[_Iterable[int]] = ..., healthy: _Optional[bool] = ..., health_reason: _Optional[str] = ..., ranks: _Optional[_Iterable[_Union[RankStatus, _Mapping]]] = ..., agent_started_at: _Optional[float] = ...) -> None: ...

class StartRun(_message.Message):
    __slots__ = ("job_id", "run_seq", "command", "argv", "workdir", "env", "ranks", "user", "term_s")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_SEQ_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ARGV_FIELD_NUMBER: _ClassVar[int]
    WORKDIR_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    RANKS_FIELD_NUMBER: _ClassVar[int]
    USER_FIELD_NUMBER: _ClassVar[int]
    TERM_S_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    run_seq: int
    command: str
    argv: _containers.RepeatedScalarFieldContainer[str]
    workdir: str
    env: _containers.ScalarMap[str, str]
    ranks: _containers.RepeatedScalarFieldContainer[int]
    user: str
    term_s: float
    def __init__(self, job_id: _Optional[int] = ..., run_seq: _Optional[int] = ..., command: _Optional[str] = ..., argv: _Optional[_Iterable[str]] = ..., workdir: _Optional[str] = ..., env: _Optional[_Mapping[str, str]] = ..., ranks: _Optional[_Iterable[int]] = ..., user: _Optional[str] = ..., term_s: _Optional[float] = ...) -> None: ...

class RunRef(_message.Message):
    __slots__ = ("job_id", "run_seq")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_SEQ_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    run_seq: int
    def __init__(self, job_id: _Optional[int] = ..., run_seq: _Optional[int] = ...) -> None: ...

class SuspendRun(_message.Message):
    __slots__ = ("job_id", "run_seq", "grace_s", "term_s")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_SEQ_FIELD_NUMBER: _ClassVar[int]
    GRACE_S_FIELD_NUMBER: _ClassVar[int]
    TERM_S_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    run_seq: int
    grace_s: float
    term_s: float
    def __init__(self, job_id: _Optional[int] = ..., run_seq: _Optional[int] = ..., grace_s: _Optional[float] = ..., term_s: _Optional[float] = ...) -> None: ...

class KillRun(_message.Message):
    __slots__ = ("job_id", "run_seq", "term_s", "reason")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_SEQ_FIELD_NUMBER: _ClassVar[int]
    TERM_S_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    run_seq: int
    term_s: float
    reason: str
    def __init__(self, job_id: _Optional[int] = ..., run_seq: _Optional[int] = ..., term_s: _Optional[float] = ..., reason: _Optional[str] = ...) -> None: ...

class ForgetRun(_message.Message):
    __slots__ = ("job_id", "run_seq")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_SEQ_FIELD_NUMBER: _ClassVar[int]
    job_id: int
    run_seq: int
    def __init__(self, job_id: _Optional[int] = ..., run_seq: _Optional[int] = ...) -> None: ...

class HeartbeatReply(_message.Message):
    __slots__ = ("start", "suspend", "kill", "forget", "heartbeat_s", "lease_s", "renew")
    START_FIELD_NUMBER: _ClassVar[int]
    SUSPEND_FIELD_NUMBER: _ClassVar[int]
    KILL_FIELD_NUMBER: _ClassVar[int]
    FORGET_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_S_FIELD_NUMBER: _ClassVar[int]
    LEASE_S_FIELD_NUMBER: _ClassVar[int]
    RENEW_FIELD_NUMBER: _ClassVar[int]
    start: _containers.RepeatedCompositeFieldContainer[StartRun]
    suspend: _containers.RepeatedCompositeFieldContainer[SuspendRun]
    kill: _containers.RepeatedCompositeFieldContainer[KillRun]
    forget: _containers.RepeatedCompositeFieldContainer[ForgetRun]
    heartbeat_s: float
    lease_s: float
    renew: _containers.RepeatedCompositeFieldContainer[RunRef]
    def __init__(self, start: _Optional[_Iterable[_Union[StartRun, _Mapping]]] = ..., suspend: _Optional[_Iterable[_Union[SuspendRun, _Mapping]]] = ..., kill: _Optional[_Iterable[_Union[KillRun, _Mapping]]] = ..., forget: _Optional[_Iterable[_Union[ForgetRun, _Mapping]]] = ..., heartbeat_s: _Optional[float] = ..., lease_s: _Optional[float] = ..., renew: _Optional[_Iterable[_Union[RunRef, _Mapping]]] = ...) -> None: ...

class ReadLogRequest(_message.Message):
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

class ReadLogReply(_message.Message):
    __slots__ = ("data", "next_offset")
    DATA_FIELD_NUMBER: _ClassVar[int]
    NEXT_OFFSET_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    next_offset: int
    def __init__(self, data: _Optional[bytes] = ..., next_offset: _Optional[int] = ...) -> None: ...
