"""What each colony RPC asks for: ONE table from full gRPC method name to verb. Pure.

The verb of an operation comes from the RPC the caller invoked, never from the request:
`OperateRequest.verb` is deprecated; the colony refuses a request whose `verb` is set and
differs from the table's (INVALID_ARGUMENT naming the field), so a read-only or
approve-only identity cannot relabel an exec as a read or an approval.

Verbs, besides the RBAC verbs of colony/rbac.py (read exec shell tap trace approve admin):

* ``identify``   — authentication only, no policy decision (WhoAmI);
* ``agent-auth`` — an agent's own calls, authenticated as an agent, never as an operator;
* ``bootstrap``  — an agent obtaining its first credentials (none exist yet).

tests/colony/test_verbs.py enumerates every service in coral_lib/_proto, so a new RPC
without a row here fails the suite.
"""

from __future__ import annotations

from coral_lib.colony import rbac

COLONY_SERVICE = "coral.colony.v1.Colony"
MESH_SERVICE = "coral.mesh.v1.Mesh"

IDENTIFY = "identify"
AGENT_AUTH = "agent-auth"
BOOTSTRAP = "bootstrap"
VERBS = (*rbac.VERBS, IDENTIFY, AGENT_AUTH, BOOTSTRAP)

# Services the colony does not serve, with where they are served instead.
NOT_COLONY = {
    "coral.agent.v1.Agent": "the agent's local unix socket (root on the agent's host only)",
    "runtime.v1.RuntimeService": "the node's CRI runtime (the agent is its client)",
    "runtime.v1.ImageService": "the node's CRI runtime (the agent is its client)",
}

_COLONY = {
    "WhoAmI": IDENTIFY,
    "ListAgents": "read",
    "ListServices": "read",
    "ResolveTargets": "read",
    "ListAudit": "read",
    "VerifyAudit": "read",
    "GetApproval": "read",
    "ListApprovals": "read",
    "Operate": "exec",
    "Shell": "shell",
    "Tap": "tap",
    "Trace": "trace",
    "Decide": "approve",
    "RevokeAgent": "admin",
    "CreateJoinToken": "admin",
    "PruneAgents": "admin",
}
_MESH = {
    "Register": AGENT_AUTH,
    "Heartbeat": AGENT_AUTH,
    "Link": AGENT_AUTH,
    "Renew": AGENT_AUTH,
    "Deregister": AGENT_AUTH,
    "Join": BOOTSTRAP,
}

RPC_VERBS: dict[str, str] = {
    **{f"/{COLONY_SERVICE}/{m}": v for m, v in _COLONY.items()},
    **{f"/{MESH_SERVICE}/{m}": v for m, v in _MESH.items()},
}


class UnknownMethod(KeyError):
    """An RPC with no row in the table: the colony refuses it rather than guess."""


def verb_of(method: str) -> str:
    """The verb of a full method name ("/coral.colony.v1.Colony/Operate")."""
    try:
        return RPC_VERBS[method]
    except KeyError:
        raise UnknownMethod(f"RPC {method!r} has no verb in coral_lib/colony/verbs.py") from None


def colony(name: str) -> str:
    """The verb of a Colony service method, by its short name ("Operate")."""
    return verb_of(f"/{COLONY_SERVICE}/{name}")


def check_request_verb(method: str, requested: str) -> str:
    """'' when the request's deprecated `verb` field is empty or agrees with the RPC's verb,
    else the reason to refuse (INVALID_ARGUMENT)."""
    verb = verb_of(method)
    if not requested or requested == verb:
        return ""
    return (f"verb {requested!r} is not accepted: the verb of {method.rsplit('/', 1)[-1]} is "
            f"{verb!r}, fixed by the RPC; leave the deprecated field 'verb' empty")
