from coral_lib._proto.coral.agent.v1 import agent_pb2 as _agent_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ServiceProvenance(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SERVICE_PROVENANCE_UNKNOWN: _ClassVar[ServiceProvenance]
    SERVICE_PROVENANCE_EXPLICIT: _ClassVar[ServiceProvenance]
    SERVICE_PROVENANCE_DISCOVERED: _ClassVar[ServiceProvenance]
    SERVICE_PROVENANCE_OVERRIDDEN: _ClassVar[ServiceProvenance]
SERVICE_PROVENANCE_UNKNOWN: ServiceProvenance
SERVICE_PROVENANCE_EXPLICIT: ServiceProvenance
SERVICE_PROVENANCE_DISCOVERED: ServiceProvenance
SERVICE_PROVENANCE_OVERRIDDEN: ServiceProvenance

class ServiceInfo(_message.Message):
    __slots__ = ("component_name", "port", "health_endpoint", "service_type", "labels", "provenance", "node_name", "node_labels", "namespace", "pod_name", "container_name", "pid", "process_name", "health_interval_seconds", "sources")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class NodeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class SourcesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    COMPONENT_NAME_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    SERVICE_TYPE_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_NAME_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_NAME_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PROCESS_NAME_FIELD_NUMBER: _ClassVar[int]
    HEALTH_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    component_name: str
    port: int
    health_endpoint: str
    service_type: str
    labels: _containers.ScalarMap[str, str]
    provenance: ServiceProvenance
    node_name: str
    node_labels: _containers.ScalarMap[str, str]
    namespace: str
    pod_name: str
    container_name: str
    pid: int
    process_name: str
    health_interval_seconds: float
    sources: _containers.ScalarMap[str, str]
    def __init__(self, component_name: _Optional[str] = ..., port: _Optional[int] = ..., health_endpoint: _Optional[str] = ..., service_type: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., provenance: _Optional[_Union[ServiceProvenance, str]] = ..., node_name: _Optional[str] = ..., node_labels: _Optional[_Mapping[str, str]] = ..., namespace: _Optional[str] = ..., pod_name: _Optional[str] = ..., container_name: _Optional[str] = ..., pid: _Optional[int] = ..., process_name: _Optional[str] = ..., health_interval_seconds: _Optional[float] = ..., sources: _Optional[_Mapping[str, str]] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("agent_id", "component_name", "colony_id", "colony_secret", "version", "labels", "wireguard_pubkey", "services", "node_name", "node_labels", "runtime", "pods")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class NodeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    COMPONENT_NAME_FIELD_NUMBER: _ClassVar[int]
    COLONY_ID_FIELD_NUMBER: _ClassVar[int]
    COLONY_SECRET_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WIREGUARD_PUBKEY_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    component_name: str
    colony_id: str
    colony_secret: str
    version: str
    labels: _containers.ScalarMap[str, str]
    wireguard_pubkey: str
    services: _containers.RepeatedCompositeFieldContainer[ServiceInfo]
    node_name: str
    node_labels: _containers.ScalarMap[str, str]
    runtime: _agent_pb2.RuntimeContext
    pods: _containers.RepeatedCompositeFieldContainer[PodRef]
    def __init__(self, agent_id: _Optional[str] = ..., component_name: _Optional[str] = ..., colony_id: _Optional[str] = ..., colony_secret: _Optional[str] = ..., version: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., wireguard_pubkey: _Optional[str] = ..., services: _Optional[_Iterable[_Union[ServiceInfo, _Mapping]]] = ..., node_name: _Optional[str] = ..., node_labels: _Optional[_Mapping[str, str]] = ..., runtime: _Optional[_Union[_agent_pb2.RuntimeContext, _Mapping]] = ..., pods: _Optional[_Iterable[_Union[PodRef, _Mapping]]] = ...) -> None: ...

class PodRef(_message.Message):
    __slots__ = ("namespace", "name", "labels", "containers")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CONTAINERS_FIELD_NUMBER: _ClassVar[int]
    namespace: str
    name: str
    labels: _containers.ScalarMap[str, str]
    containers: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, namespace: _Optional[str] = ..., name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., containers: _Optional[_Iterable[str]] = ...) -> None: ...

class ServiceHealth(_message.Message):
    __slots__ = ("service_key", "state", "last_check", "last_error")
    SERVICE_KEY_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    LAST_CHECK_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    service_key: str
    state: str
    last_check: float
    last_error: str
    def __init__(self, service_key: _Optional[str] = ..., state: _Optional[str] = ..., last_check: _Optional[float] = ..., last_error: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("accepted", "reason", "agent_id", "heartbeat_interval_seconds", "colony_id")
    ACCEPTED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COLONY_ID_FIELD_NUMBER: _ClassVar[int]
    accepted: bool
    reason: str
    agent_id: str
    heartbeat_interval_seconds: float
    colony_id: str
    def __init__(self, accepted: _Optional[bool] = ..., reason: _Optional[str] = ..., agent_id: _Optional[str] = ..., heartbeat_interval_seconds: _Optional[float] = ..., colony_id: _Optional[str] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("agent_id", "colony_id", "colony_secret", "services_changed", "services", "pods_changed", "pods", "health")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    COLONY_ID_FIELD_NUMBER: _ClassVar[int]
    COLONY_SECRET_FIELD_NUMBER: _ClassVar[int]
    SERVICES_CHANGED_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    PODS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    PODS_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    colony_id: str
    colony_secret: str
    services_changed: bool
    services: _containers.RepeatedCompositeFieldContainer[ServiceInfo]
    pods_changed: bool
    pods: _containers.RepeatedCompositeFieldContainer[PodRef]
    health: _containers.RepeatedCompositeFieldContainer[ServiceHealth]
    def __init__(self, agent_id: _Optional[str] = ..., colony_id: _Optional[str] = ..., colony_secret: _Optional[str] = ..., services_changed: _Optional[bool] = ..., services: _Optional[_Iterable[_Union[ServiceInfo, _Mapping]]] = ..., pods_changed: _Optional[bool] = ..., pods: _Optional[_Iterable[_Union[PodRef, _Mapping]]] = ..., health: _Optional[_Iterable[_Union[ServiceHealth, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("ok", "reregister", "reason")
    OK_FIELD_NUMBER: _ClassVar[int]
    REREGISTER_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    reregister: bool
    reason: str
    def __init__(self, ok: _Optional[bool] = ..., reregister: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class LinkHello(_message.Message):
    __slots__ = ("agent_id", "colony_id", "colony_secret")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    COLONY_ID_FIELD_NUMBER: _ClassVar[int]
    COLONY_SECRET_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    colony_id: str
    colony_secret: str
    def __init__(self, agent_id: _Optional[str] = ..., colony_id: _Optional[str] = ..., colony_secret: _Optional[str] = ...) -> None: ...

class JoinRequest(_message.Message):
    __slots__ = ("join_token", "service_account_token", "csr_der", "agent_id_hint")
    JOIN_TOKEN_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ACCOUNT_TOKEN_FIELD_NUMBER: _ClassVar[int]
    CSR_DER_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_HINT_FIELD_NUMBER: _ClassVar[int]
    join_token: str
    service_account_token: str
    csr_der: bytes
    agent_id_hint: str
    def __init__(self, join_token: _Optional[str] = ..., service_account_token: _Optional[str] = ..., csr_der: _Optional[bytes] = ..., agent_id_hint: _Optional[str] = ...) -> None: ...

class JoinResponse(_message.Message):
    __slots__ = ("certificate_pem", "ca_pem", "agent_id", "not_after")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    CA_PEM_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: str
    ca_pem: str
    agent_id: str
    not_after: float
    def __init__(self, certificate_pem: _Optional[str] = ..., ca_pem: _Optional[str] = ..., agent_id: _Optional[str] = ..., not_after: _Optional[float] = ...) -> None: ...

class RenewRequest(_message.Message):
    __slots__ = ("csr_der",)
    CSR_DER_FIELD_NUMBER: _ClassVar[int]
    csr_der: bytes
    def __init__(self, csr_der: _Optional[bytes] = ...) -> None: ...

class RenewResponse(_message.Message):
    __slots__ = ("certificate_pem", "not_after")
    CERTIFICATE_PEM_FIELD_NUMBER: _ClassVar[int]
    NOT_AFTER_FIELD_NUMBER: _ClassVar[int]
    certificate_pem: str
    not_after: float
    def __init__(self, certificate_pem: _Optional[str] = ..., not_after: _Optional[float] = ...) -> None: ...

class AgentMessage(_message.Message):
    __slots__ = ("op_id", "hello", "exec_result", "shell", "tap", "runtime", "error", "trace")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    HELLO_FIELD_NUMBER: _ClassVar[int]
    EXEC_RESULT_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    TAP_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    hello: LinkHello
    exec_result: _agent_pb2.ExecResult
    shell: _agent_pb2.ShellOutput
    tap: _agent_pb2.TapEvent
    runtime: _agent_pb2.RuntimeContext
    error: str
    trace: _agent_pb2.TraceEvent
    def __init__(self, op_id: _Optional[str] = ..., hello: _Optional[_Union[LinkHello, _Mapping]] = ..., exec_result: _Optional[_Union[_agent_pb2.ExecResult, _Mapping]] = ..., shell: _Optional[_Union[_agent_pb2.ShellOutput, _Mapping]] = ..., tap: _Optional[_Union[_agent_pb2.TapEvent, _Mapping]] = ..., runtime: _Optional[_Union[_agent_pb2.RuntimeContext, _Mapping]] = ..., error: _Optional[str] = ..., trace: _Optional[_Union[_agent_pb2.TraceEvent, _Mapping]] = ...) -> None: ...

class ColonyMessage(_message.Message):
    __slots__ = ("op_id", "exec", "shell", "tap", "runtime", "cancel", "trace")
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    SHELL_FIELD_NUMBER: _ClassVar[int]
    TAP_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    op_id: str
    exec: _agent_pb2.ExecRequest
    shell: _agent_pb2.ShellInput
    tap: _agent_pb2.TapRequest
    runtime: _agent_pb2.GetRuntimeContextRequest
    cancel: bool
    trace: _agent_pb2.TraceRequest
    def __init__(self, op_id: _Optional[str] = ..., exec: _Optional[_Union[_agent_pb2.ExecRequest, _Mapping]] = ..., shell: _Optional[_Union[_agent_pb2.ShellInput, _Mapping]] = ..., tap: _Optional[_Union[_agent_pb2.TapRequest, _Mapping]] = ..., runtime: _Optional[_Union[_agent_pb2.GetRuntimeContextRequest, _Mapping]] = ..., cancel: _Optional[bool] = ..., trace: _Optional[_Union[_agent_pb2.TraceRequest, _Mapping]] = ...) -> None: ...

class DeregisterRequest(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class DeregisterResponse(_message.Message):
    __slots__ = ("removed", "services")
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    removed: bool
    services: int
    def __init__(self, removed: _Optional[bool] = ..., services: _Optional[int] = ...) -> None: ...
