"""`coral audit list` table rows: one readable line per record kind (pure)."""

from __future__ import annotations

import pytest

from coral_lib.commands import operator


@pytest.mark.parametrize("record, what, status", [
    ({"kind": "discovery", "event": "added", "agent_id": "a",
      "service": {"component_name": "api", "port": 80,
                  "provenance": "SERVICE_PROVENANCE_OVERRIDDEN"}},
     "added api:80 (overridden)", ""),
    ({"kind": "discovery", "agent_id": "a", "added": ["ns/p/c/api:80", "ns/p/c/web:81"],
      "removed": ["ns/q/c/db:5432"], "changed": [], "overridden": [], "services": 2},
     "2 added, 1 removed; 2 services now", ""),
    ({"kind": "started", "verb": "exec", "command": "uname -a"}, "exec uname -a", ""),
    ({"kind": "finished", "op_id": "x/a//", "status": "failed", "exit_code": 3}, "x/a//",
     "failed rc=3"),
    ({"kind": "finished", "op_id": "y", "status": "interrupted", "exit_code": None}, "y",
     "interrupted"),
    ({"kind": "refused", "verb": "shell", "target": "a", "reason": "no rule"},
     "shell a: no rule", ""),
    ({"kind": "entered", "node": "node-a", "namespace": "shop", "pod": "web",
      "container": "app", "resolved_by": "cri"}, "entered node-a shop/web/app (cri)", ""),
    ({"kind": "entered", "node": "vm1", "namespace": "", "pod": "", "container": "",
      "resolved_by": "host"}, "entered vm1 (host)", ""),
    ({"kind": "identity", "event": "revoked", "agent_id": "web-1", "by": "admin"},
     "revoked admin", ""),
    ({"kind": "identity", "event": "joined", "agent_id": "web-1", "peer": "ipv4:1.2.3.4:5"},
     "joined ipv4:1.2.3.4:5", ""),
])
def test_audit_row_says_what_happened(record, what, status):
    row = operator.audit_row({"id": 1, "ts": 0, **record})
    assert (row["what"], row["status"]) == (what, status)
