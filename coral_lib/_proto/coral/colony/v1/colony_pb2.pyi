from coral_lib._proto.coral.agent.v1 import agent_pb2 as _agent_pb2
from coral_lib._proto.coral.mesh.v1 import mesh_pb2 as _mesh_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Targeting(_message.Message):
    __slots__ = ("service", "agent", "selector", "all", "pod", "namespace", "container", "node")
    class SelectorEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    ALL_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    service: str
    agent: str
    selector: _containers.ScalarMap[str, str]
    all: bool
    pod: str
    namespace: str
    container: str
    node: str
    def __init__(self, service: _Optional[str] = ..., agent: _Optional[str] = ..., selector: _Optional[_Mapping[str, str]] = ..., all: _Optional[bool] = ..., pod: _Optional[str] = ..., namespace: _Optional[str] = ..., container: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class AgentRecord(_message.Message):
    __slots__ = ("agent_id", "version", "runtime", "node_name", "node_labels", "labels", "last_seen", "status", "connected", "service_count", "registered_at")
    class NodeLabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RUNTIME_FIELD_NUMBER: _ClassVar[int]
    NODE_NAME_FIELD_NUMBER: _ClassVar[int]
    NODE_LABELS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    SERVICE_COUNT_FIELD_NUMBER: _ClassVar[int]
    REGISTERED_AT_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    version: str
    runtime: _agent_pb2.RuntimeContext
    node_name: str
    node_labels: _containers.ScalarMap[str, str]
    labels: _containers.ScalarMap[str, str]
    last_seen: float
    status: str
    connected: bool
    service_count: int
    registered_at: float
    def __init__(self, agent_id: _Optional[str] = ..., version: _Optional[str] = ..., runtime: _Optional[_Union[_agent_pb2.RuntimeContext, _Mapping]] = ..., node_name: _Optional[str] = ..., node_labels: _Optional[_Mapping[str, str]] = ..., labels: _Optional[_Mapping[str, str]] = ..., last_seen: _Optional[float] = ..., status: _Optional[str] = ..., connected: _Optional[bool] = ..., service_count: _Optional[int] = ..., registered_at: _Optional[float] = ...) -> None: ...

class ServiceRecord(_message.Message):
    __slots__ = ("agent_id", "service", "health")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    HEALTH_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    service: _mesh_pb2.ServiceInfo
    health: _mesh_pb2.ServiceHealth
    def __init__(self, agent_id: _Optional[str] = ..., service: _Optional[_Union[_mesh_pb2.ServiceInfo, _Mapping]] = ..., health: _Optional[_Union[_mesh_pb2.ServiceHealth, _Mapping]] = ...) -> None: ...

class ListAgentsRequest(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: str
    def __init__(self, node: _Optional[str] = ...) -> None: ...

class ListAgentsResponse(_message.Message):
    __slots__ = ("agents",)
    AGENTS_FIELD_NUMBER: _ClassVar[int]
    agents: _containers.RepeatedCompositeFieldContainer[AgentRecord]
    def __init__(self, agents: _Optional[_Iterable[_Union[AgentRecord, _Mapping]]] = ...) -> None: ...

class ListServicesRequest(_message.Message):
    __slots__ = ("name", "labels", "provenance", "agent", "node", "namespace", "page_size", "page_token")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    name: str
    labels: _containers.ScalarMap[str, str]
    provenance: _mesh_pb2.ServiceProvenance
    agent: str
    node: str
    namespace: str
    page_size: int
    page_token: str
    def __init__(self, name: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., provenance: _Optional[_Union[_mesh_pb2.ServiceProvenance, str]] = ..., agent: _Optional[str] = ..., node: _Optional[str] = ..., namespace: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListServicesResponse(_message.Message):
    __slots__ = ("services", "next_page_token")
    SERVICES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    services: _containers.RepeatedCompositeFieldContainer[ServiceRecord]
    next_page_token: str
    def __init__(self, services: _Optional[_Iterable[_Union[ServiceRecord, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("agent_id", "service", "namespace", "pod", "container", "node")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    NAMESPACE_FIELD_NUMBER: _ClassVar[int]
    POD_FIELD_NUMBER: _ClassVar[int]
    CONTAINER_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    service: str
    namespace: str
    pod: str
    container: str
    node: str
    def __init__(self, agent_id: _Optional[str] = ..., service: _Optional[str] = ..., namespace: _Optional[str] = ..., pod: _Optional[str] = ..., container: _Optional[str] = ..., node: _Optional[str] = ...) -> None: ...

class ResolveResponse(_message.Message):
    __slots__ = ("targets",)
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    targets: _containers.RepeatedCompositeFieldContainer[Target]
    def __init__(self, targets: _Optional[_Iterable[_Union[Target, _Mapping]]] = ...) -> None: ...

class OperateRequest(_message.Message):
    __slots__ = ("targeting", "exec", "max_concurrency", "stop_on_failure_percentage", "approval_id", "verb", "no_wait")
    TARGETING_FIELD_NUMBER: _ClassVar[int]
    EXEC_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    STOP_ON_FAILURE_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    VERB_FIELD_NUMBER: _ClassVar[int]
    NO_WAIT_FIELD_NUMBER: _ClassVar[int]
    targeting: Targeting
    exec: _agent_pb2.ExecRequest
    max_concurrency: int
    stop_on_failure_percentage: float
    approval_id: str
    verb: str
    no_wait: bool
    def __init__(self, targeting: _Optional[_Union[Targeting, _Mapping]] = ..., exec: _Optional[_Union[_agent_pb2.ExecRequest, _Mapping]] = ..., max_concurrency: _Optional[int] = ..., stop_on_failure_percentage: _Optional[float] = ..., approval_id: _Optional[str] = ..., verb: _Optional[str] = ..., no_wait: _Optional[bool] = ...) -> None: ...

class TargetResult(_message.Message):
    __slots__ = ("target", "result", "audit_id", "status", "finished_audit_id")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    target: Target
    result: _agent_pb2.ExecResult
    audit_id: int
    status: str
    finished_audit_id: int
    def __init__(self, target: _Optional[_Union[Target, _Mapping]] = ..., result: _Optional[_Union[_agent_pb2.ExecResult, _Mapping]] = ..., audit_id: _Optional[int] = ..., status: _Optional[str] = ..., finished_audit_id: _Optional[int] = ...) -> None: ...

class OperateSummary(_message.Message):
    __slots__ = ("targets", "succeeded", "failed", "audit_ids", "operation_id")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    AUDIT_IDS_FIELD_NUMBER: _ClassVar[int]
    OPERATION_ID_FIELD_NUMBER: _ClassVar[int]
    targets: int
    succeeded: int
    failed: int
    audit_ids: _containers.RepeatedScalarFieldContainer[int]
    operation_id: str
    def __init__(self, targets: _Optional[int] = ..., succeeded: _Optional[int] = ..., failed: _Optional[int] = ..., audit_ids: _Optional[_Iterable[int]] = ..., operation_id: _Optional[str] = ...) -> None: ...

class PendingApproval(_message.Message):
    __slots__ = ("approval_id", "reason", "expires_at")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    reason: str
    expires_at: float
    def __init__(self, approval_id: _Optional[str] = ..., reason: _Optional[str] = ..., expires_at: _Optional[float] = ...) -> None: ...

class OperateEvent(_message.Message):
    __slots__ = ("targets", "result", "summary", "pending")
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    targets: ResolveResponse
    result: TargetResult
    summary: OperateSummary
    pending: PendingApproval
    def __init__(self, targets: _Optional[_Union[ResolveResponse, _Mapping]] = ..., result: _Optional[_Union[TargetResult, _Mapping]] = ..., summary: _Optional[_Union[OperateSummary, _Mapping]] = ..., pending: _Optional[_Union[PendingApproval, _Mapping]] = ...) -> None: ...

class ShellFrame(_message.Message):
    __slots__ = ("targeting", "input")
    TARGETING_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    targeting: Targeting
    input: _agent_pb2.ShellInput
    def __init__(self, targeting: _Optional[_Union[Targeting, _Mapping]] = ..., input: _Optional[_Union[_agent_pb2.ShellInput, _Mapping]] = ...) -> None: ...

class TapOperateRequest(_message.Message):
    __slots__ = ("targeting", "tap", "approval_id", "no_wait")
    TARGETING_FIELD_NUMBER: _ClassVar[int]
    TAP_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    NO_WAIT_FIELD_NUMBER: _ClassVar[int]
    targeting: Targeting
    tap: _agent_pb2.TapRequest
    approval_id: str
    no_wait: bool
    def __init__(self, targeting: _Optional[_Union[Targeting, _Mapping]] = ..., tap: _Optional[_Union[_agent_pb2.TapRequest, _Mapping]] = ..., approval_id: _Optional[str] = ..., no_wait: _Optional[bool] = ...) -> None: ...

class TapOperateEvent(_message.Message):
    __slots__ = ("target", "event", "targets", "pending", "audit_id")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    target: Target
    event: _agent_pb2.TapEvent
    targets: ResolveResponse
    pending: PendingApproval
    audit_id: int
    def __init__(self, target: _Optional[_Union[Target, _Mapping]] = ..., event: _Optional[_Union[_agent_pb2.TapEvent, _Mapping]] = ..., targets: _Optional[_Union[ResolveResponse, _Mapping]] = ..., pending: _Optional[_Union[PendingApproval, _Mapping]] = ..., audit_id: _Optional[int] = ...) -> None: ...

class TraceOperateRequest(_message.Message):
    __slots__ = ("targeting", "trace", "approval_id", "no_wait")
    TARGETING_FIELD_NUMBER: _ClassVar[int]
    TRACE_FIELD_NUMBER: _ClassVar[int]
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    NO_WAIT_FIELD_NUMBER: _ClassVar[int]
    targeting: Targeting
    trace: _agent_pb2.TraceRequest
    approval_id: str
    no_wait: bool
    def __init__(self, targeting: _Optional[_Union[Targeting, _Mapping]] = ..., trace: _Optional[_Union[_agent_pb2.TraceRequest, _Mapping]] = ..., approval_id: _Optional[str] = ..., no_wait: _Optional[bool] = ...) -> None: ...

class TraceOperateEvent(_message.Message):
    __slots__ = ("target", "event", "targets", "pending", "audit_id")
    TARGET_FIELD_NUMBER: _ClassVar[int]
    EVENT_FIELD_NUMBER: _ClassVar[int]
    TARGETS_FIELD_NUMBER: _ClassVar[int]
    PENDING_FIELD_NUMBER: _ClassVar[int]
    AUDIT_ID_FIELD_NUMBER: _ClassVar[int]
    target: Target
    event: _agent_pb2.TraceEvent
    targets: ResolveResponse
    pending: PendingApproval
    audit_id: int
    def __init__(self, target: _Optional[_Union[Target, _Mapping]] = ..., event: _Optional[_Union[_agent_pb2.TraceEvent, _Mapping]] = ..., targets: _Optional[_Union[ResolveResponse, _Mapping]] = ..., pending: _Optional[_Union[PendingApproval, _Mapping]] = ..., audit_id: _Optional[int] = ...) -> None: ...

class ListAuditRequest(_message.Message):
    __slots__ = ("kind", "requester", "agent_id", "since", "limit", "op_id", "after_id", "tail")
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    OP_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    TAIL_FIELD_NUMBER: _ClassVar[int]
    kind: str
    requester: str
    agent_id: str
    since: float
    limit: int
    op_id: str
    after_id: int
    tail: bool
    def __init__(self, kind: _Optional[str] = ..., requester: _Optional[str] = ..., agent_id: _Optional[str] = ..., since: _Optional[float] = ..., limit: _Optional[int] = ..., op_id: _Optional[str] = ..., after_id: _Optional[int] = ..., tail: _Optional[bool] = ...) -> None: ...

class AuditRecord(_message.Message):
    __slots__ = ("id", "ts", "kind", "fields_json", "prev_hash", "hash")
    ID_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    FIELDS_JSON_FIELD_NUMBER: _ClassVar[int]
    PREV_HASH_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    id: int
    ts: float
    kind: str
    fields_json: str
    prev_hash: str
    hash: str
    def __init__(self, id: _Optional[int] = ..., ts: _Optional[float] = ..., kind: _Optional[str] = ..., fields_json: _Optional[str] = ..., prev_hash: _Optional[str] = ..., hash: _Optional[str] = ...) -> None: ...

class ListAuditResponse(_message.Message):
    __slots__ = ("records",)
    RECORDS_FIELD_NUMBER: _ClassVar[int]
    records: _containers.RepeatedCompositeFieldContainer[AuditRecord]
    def __init__(self, records: _Optional[_Iterable[_Union[AuditRecord, _Mapping]]] = ...) -> None: ...

class VerifyAuditRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class VerifyAuditResponse(_message.Message):
    __slots__ = ("ok", "checked", "first_bad_id", "reason")
    OK_FIELD_NUMBER: _ClassVar[int]
    CHECKED_FIELD_NUMBER: _ClassVar[int]
    FIRST_BAD_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ok: bool
    checked: int
    first_bad_id: int
    reason: str
    def __init__(self, ok: _Optional[bool] = ..., checked: _Optional[int] = ..., first_bad_id: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class ApprovalDecision(_message.Message):
    __slots__ = ("approval_id", "approve")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    APPROVE_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    approve: bool
    def __init__(self, approval_id: _Optional[str] = ..., approve: _Optional[bool] = ...) -> None: ...

class ApprovalRequest(_message.Message):
    __slots__ = ("approval_id",)
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    def __init__(self, approval_id: _Optional[str] = ...) -> None: ...

class ApprovalRecord(_message.Message):
    __slots__ = ("approval_id", "requester", "verb", "target", "command", "state", "decided_by", "expires_at", "created_at")
    APPROVAL_ID_FIELD_NUMBER: _ClassVar[int]
    REQUESTER_FIELD_NUMBER: _ClassVar[int]
    VERB_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DECIDED_BY_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    approval_id: str
    requester: str
    verb: str
    target: str
    command: str
    state: str
    decided_by: str
    expires_at: float
    created_at: float
    def __init__(self, approval_id: _Optional[str] = ..., requester: _Optional[str] = ..., verb: _Optional[str] = ..., target: _Optional[str] = ..., command: _Optional[str] = ..., state: _Optional[str] = ..., decided_by: _Optional[str] = ..., expires_at: _Optional[float] = ..., created_at: _Optional[float] = ...) -> None: ...

class ListApprovalsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListApprovalsResponse(_message.Message):
    __slots__ = ("approvals",)
    APPROVALS_FIELD_NUMBER: _ClassVar[int]
    approvals: _containers.RepeatedCompositeFieldContainer[ApprovalRecord]
    def __init__(self, approvals: _Optional[_Iterable[_Union[ApprovalRecord, _Mapping]]] = ...) -> None: ...

class WhoAmIRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WhoAmIResponse(_message.Message):
    __slots__ = ("identity", "groups")
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    identity: str
    groups: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, identity: _Optional[str] = ..., groups: _Optional[_Iterable[str]] = ...) -> None: ...

class RevokeAgentRequest(_message.Message):
    __slots__ = ("agent_id",)
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    def __init__(self, agent_id: _Optional[str] = ...) -> None: ...

class RevokeAgentResponse(_message.Message):
    __slots__ = ("agent_id", "revoked_at", "link_closed")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    REVOKED_AT_FIELD_NUMBER: _ClassVar[int]
    LINK_CLOSED_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    revoked_at: float
    link_closed: bool
    def __init__(self, agent_id: _Optional[str] = ..., revoked_at: _Optional[float] = ..., link_closed: _Optional[bool] = ...) -> None: ...

class CreateJoinTokenRequest(_message.Message):
    __slots__ = ("agent_id", "ttl_seconds")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    TTL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    ttl_seconds: float
    def __init__(self, agent_id: _Optional[str] = ..., ttl_seconds: _Optional[float] = ...) -> None: ...

class CreateJoinTokenResponse(_message.Message):
    __slots__ = ("token", "agent_id", "expires_at")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    token: str
    agent_id: str
    expires_at: float
    def __init__(self, token: _Optional[str] = ..., agent_id: _Optional[str] = ..., expires_at: _Optional[float] = ...) -> None: ...

class PruneAgentsRequest(_message.Message):
    __slots__ = ("older_than_seconds", "dry_run")
    OLDER_THAN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    older_than_seconds: float
    dry_run: bool
    def __init__(self, older_than_seconds: _Optional[float] = ..., dry_run: _Optional[bool] = ...) -> None: ...

class PruneAgentsResponse(_message.Message):
    __slots__ = ("agent_ids",)
    AGENT_IDS_FIELD_NUMBER: _ClassVar[int]
    agent_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, agent_ids: _Optional[_Iterable[str]] = ...) -> None: ...
