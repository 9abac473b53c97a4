"""Issue 14 §4: the Kubernetes modes end to end, agents running as pods from the project's
image (tests/support/image.py) on the private containerd, started by the pod runner from
objects in the API fixture under its RBAC, Pod Security and ServiceAccount admission; the
colony is a real process reviewing the agents' projected tokens with TokenReview. One
cluster (tests/support/kubecluster.py) and one image import per session."""

from __future__ import annotations

import pytest

from tests.cri.conftest import why_not_runnable
from tests.support.image import agent_image  # noqa: F401 - the session fixture
from tests.support.kubecluster import KubeCluster


@pytest.fixture(scope="session")
def kube(tmp_path_factory, agent_image):  # noqa: F811 - pytest fixture injection
    reason = why_not_runnable()
    if reason:
        pytest.skip(f"containerd cannot run here: {reason}")
    with KubeCluster(tmp_path_factory.mktemp("e2e"), image=agent_image) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def cluster_colony(kube):
    """The cluster's colony: reviews agents' projected tokens through the fixture's
    TokenReview (not the root `colony` fixture, which runs without a cluster)."""
    return kube.start_colony()
