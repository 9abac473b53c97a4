"""An in-repo Kubernetes API server fixture for tests (no real API server runs here).

HTTPS on 127.0.0.1 with a generated CA and kubeconfig; pods, namespaces, nodes and the
kinds the deploy roles apply; list/watch with selectors, bookmarks and 410 Gone;
pods/exec over WebSocket; mutating admission webhooks; a tiny controller (see
controller.py: fixture behaviour, not Kubernetes); churn and fault injection.
Held to real behaviour by tests/kubeapi/, which runs the `kubernetes` client, kubectl and
kubernetes.core against it.
"""

from tests.support.kubeapi.server import KubeAPIServer

__all__ = ["KubeAPIServer"]
