from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RuntimeMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    RUNTIME_MODE_UNKNOWN: _ClassVar[RuntimeMode]
    RUNTIME_MODE_NATIVE: _ClassVar[RuntimeMode]
    RUNTIME_MODE_CONTAINER: _ClassVar[RuntimeMode]
    RUNTIME_MODE_K8S_DAEMONSET: _ClassVar[RuntimeMode]
    RUNTIME_MODE_K8S_SIDECAR: _ClassVar[RuntimeMode]
RUNTIME_MODE_UNKNOWN: RuntimeMode
RUNTIME_MODE_NATIVE: RuntimeMode
RUNTIME_MODE_CONTAINER: RuntimeMode
RUNTIME_MODE_K8S_DAEMONSET: RuntimeMode
RUNTIME_MODE_K8S_SIDECAR: RuntimeMode

class Capability(_message.Message):
    __slots__ = ("available", "reason")
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    available: bool
    reason: str
    def __init__(self, available: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class RuntimeContext(_message.Message):
    __slots__ = ("mode", "visibility", "exec_backend", "can_exec", "can_shell", "can_tap", "can_trace", "warnings", "pod_name", "pod_namespace", "pod_uid", "node_name", "hostname", "details")
    class DetailsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODE_FIELD_NUMBER: _ClassVar[int]
    VISIBILITY_FIELD_NUMBER: _ClassVar[int]
    EXEC_BACKEND_FIELD_NUMBER: _ClassVar[int]
    CAN_EXEC_FIELD_NUMBER: _ClassVar[int]
    CAN_SHELL_FIELD_NUMBER: _ClassVar[int]
    CAN_TAP_FIELD_NUMBER: _ClassVar[int]
    CAN_TRACE_FIELD_NUMBER: _ClassVar[int]
    WARNINGS_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    POD_NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_UID_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    mode: RuntimeMode
    visibility: str
    exec_backend: str
    can_exec: Capability
    can_shell: Capability
    can_tap: Capability
    can_trace: Capability
    warnings: _containers.RepeatedScalarFieldContainer[str]
    pod_name: str
    pod_namespace: str
    pod_uid: str
    node_name: str
    hostname: str
    details: _containers.ScalarMap[str, str]
    def __init__(self, mode: _Optional[_Union[RuntimeMode, str]] = ..., visibility: _Optional[str] = ..., exec_backend: _Optional[str] = ..., can_exec: _Optional[_Union[Capability, _Mapping]] = ..., can_shell: _Optional[_Union[Capability, _Mapping]] = ..., can_tap: _Optional[_Union[Capability, _Mapping]] = ..., can_trace: _Optional[_Union[Capability, _Mapping]] = ..., warnings: _Optional[_Iterable[str]] = ..., pod_name: _Optional[str] = ..., pod_namespace: _Optional[str] = ..., pod_uid: _Optional[str] = ..., node_name: _Optional[str] = ..., hostname: _Optional[str] = ..., details: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetRuntimeContextRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExecTarget(_message.Message):
    __slots__ = ("namespace", "pod_name", "container_name", "container_id")
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    pod_name: str
    container_name: str
    container_id: str
    def __init__(self, namespace: _Optional[str] = ..., pod_name: _Optional[str] = ..., container_name: _Optional[str] = ..., container_id: _Optional[str] = ...) -> None: ...

class EnteredTarget(_message.Message):
    __slots__ = ("node", "namespace", "pod", "container", "container_id", "resolved_by")
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_ID_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_BY_FIELD_NUMBER: _ClassVar[int]
    node: str
    namespace: str
    pod: str
    container: str
    container_id: str
    resolved_by: str
    def __init__(self, node: _Optional[str] = ..., namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., container_id: _Optional[str] = ..., resolved_by: _Optional[str] = ...) -> None: ...

class ExecRequest(_message.Message):
    __slots__ = ("argv", "shell", "timeout_seconds", "max_output_bytes", "env", "cwd", "stdin", "target", "service")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    CWD_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    shell: bool
    timeout_seconds: float
    max_output_bytes: int
    env: _containers.ScalarMap[str, str]
    cwd: str
    stdin: bytes
    target: ExecTarget
    service: str
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., shell: _Optional[bool] = ..., timeout_seconds: _Optional[float] = ..., max_output_bytes: _Optional[int] = ..., env: _Optional[_Mapping[str, str]] = ..., cwd: _Optional[str] = ..., stdin: _Optional[bytes] = ..., target: _Optional[_Union[ExecTarget, _Mapping]] = ..., service: _Optional[str] = ...) -> None: ...

class ExecResult(_message.Message):
    __slots__ = ("exit_code", "stdout", "stderr", "duration_seconds", "truncated", "timed_out", "error", "entered", "refused")
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    TIMED_OUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    exit_code: int
    stdout: bytes
    stderr: bytes
    duration_seconds: float
    truncated: bool
    timed_out: bool
    error: str
    entered: EnteredTarget
    refused: bool
    def __init__(self, exit_code: _Optional[int] = ..., stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., duration_seconds: _Optional[float] = ..., truncated: _Optional[bool] = ..., timed_out: _Optional[bool] = ..., error: _Optional[str] = ..., entered: _Optional[_Union[EnteredTarget, _Mapping]] = ..., refused: _Optional[bool] = ...) -> None: ...

class ExecChunk(_message.Message):
    __slots__ = ("stdout", "stderr", "result")
    STDOUT_FIELD_NUMBER: _ClassVar[int]
    STDERR_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    stdout: bytes
    stderr: bytes
    result: ExecResult
    def __init__(self, stdout: _Optional[bytes] = ..., stderr: _Optional[bytes] = ..., result: _Optional[_Union[ExecResult, _Mapping]] = ...) -> None: ...

class ShellStart(_message.Message):
    __slots__ = ("argv", "target", "rows", "cols", "env", "term")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ARGV_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    argv: _containers.RepeatedScalarFieldContainer[str]
    target: ExecTarget
    rows: int
    cols: int
    env: _containers.ScalarMap[str, str]
    term: str
    def __init__(self, argv: _Optional[_Iterable[str]] = ..., target: _Optional[_Union[ExecTarget, _Mapping]] = ..., rows: _Optional[int] = ..., cols: _Optional[int] = ..., env: _Optional[_Mapping[str, str]] = ..., term: _Optional[str] = ...) -> None: ...

class Resize(_message.Message):
    __slots__ = ("rows", "cols")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    rows: int
    cols: int
    def __init__(self, rows: _Optional[int] = ..., cols: _Optional[int] = ...) -> None: ...

class ShellInput(_message.Message):
    __slots__ = ("start", "stdin", "resize", "signal", "close_stdin")
    START_FIELD_NUMBER: _ClassVar[int]
    STDIN_FIELD_NUMBER: _ClassVar[int]
    RESIZE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    CLOSE_STDIN_FIELD_NUMBER: _ClassVar[int]
    start: ShellStart
    stdin: bytes
    resize: Resize
    signal: int
    close_stdin: bool
    def __init__(self, start: _Optional[_Union[ShellStart, _Mapping]] = ..., stdin: _Optional[bytes] = ..., resize: _Optional[_Union[Resize, _Mapping]] = ..., signal: _Optional[int] = ..., close_stdin: _Optional[bool] = ...) -> None: ...

class ShellOutput(_message.Message):
    __slots__ = ("data", "exit_code", "error", "entered")
    DATA_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    exit_code: int
    error: str
    entered: EnteredTarget
    def __init__(self, data: _Optional[bytes] = ..., exit_code: _Optional[int] = ..., error: _Optional[str] = ..., entered: _Optional[_Union[EnteredTarget, _Mapping]] = ...) -> None: ...

class TapRequest(_message.Message):
    __slots__ = ("target", "filter", "duration_seconds", "max_packets", "max_bytes", "headers_only")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_PACKETS_FIELD_NUMBER: _ClassVar[int]
    MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    HEADERS_ONLY_FIELD_NUMBER: _ClassVar[int]
    target: ExecTarget
    filter: str
    duration_seconds: float
    max_packets: int
    max_bytes: int
    headers_only: bool
    def __init__(self, target: _Optional[_Union[ExecTarget, _Mapping]] = ..., filter: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., max_packets: _Optional[int] = ..., max_bytes: _Optional[int] = ..., headers_only: _Optional[bool] = ...) -> None: ...

class TapPacket(_message.Message):
    __slots__ = ("ts", "data", "orig_len")
    TS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    ORIG_LEN_FIELD_NUMBER: _ClassVar[int]
    ts: float
    data: bytes
    orig_len: int
    def __init__(self, ts: _Optional[float] = ..., data: _Optional[bytes] = ..., orig_len: _Optional[int] = ...) -> None: ...

class TapSummary(_message.Message):
    __slots__ = ("packets", "bytes", "dropped", "reason")
    PACKETS_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    packets: int
    bytes: int
    dropped: int
    reason: str
    def __init__(self, packets: _Optional[int] = ..., bytes: _Optional[int] = ..., dropped: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class TapEvent(_message.Message):
    __slots__ = ("packet", "summary", "error", "entered", "refused")
    PACKET_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    packet: TapPacket
    summary: TapSummary
    error: str
    entered: EnteredTarget
    refused: bool
    def __init__(self, packet: _Optional[_Union[TapPacket, _Mapping]] = ..., summary: _Optional[_Union[TapSummary, _Mapping]] = ..., error: _Optional[str] = ..., entered: _Optional[_Union[EnteredTarget, _Mapping]] = ..., refused: _Optional[bool] = ...) -> None: ...

class TraceRequest(_message.Message):
    __slots__ = ("target", "kind", "duration_seconds", "max_events")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DURATION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MAX_EVENTS_FIELD_NUMBER: _ClassVar[int]
    target: ExecTarget
    kind: str
    duration_seconds: float
    max_events: int
    def __init__(self, target: _Optional[_Union[ExecTarget, _Mapping]] = ..., kind: _Optional[str] = ..., duration_seconds: _Optional[float] = ..., max_events: _Optional[int] = ...) -> None: ...

class TraceSummary(_message.Message):
    __slots__ = ("events", "lost", "reason")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    LOST_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    events: int
    lost: int
    reason: str
    def __init__(self, events: _Optional[int] = ..., lost: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class TraceEvent(_message.Message):
    __slots__ = ("json", "summary", "error", "entered", "refused")
    JSON_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ENTERED_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    json: str
    summary: TraceSummary
    error: str
    entered: EnteredTarget
    refused: bool
    def __init__(self, json: _Optional[str] = ..., summary: _Optional[_Union[TraceSummary, _Mapping]] = ..., error: _Optional[str] = ..., entered: _Optional[_Union[EnteredTarget, _Mapping]] = ..., refused: _Optional[bool] = ...) -> None: ...
