from tests.podrunner.conftest import exec_in, is_ready, pod, wait_for


def test_smoke(cluster, ns):
    cluster.store.create(pod("p", [{"name": "app", "command": ["sleep", "1000"]}]), namespace=ns)
    wait_for(lambda: is_ready(cluster, ns, "p"), what="ready")
    assert exec_in(cluster, ns, "p", "app", ["id", "-u"]) == (0, "0\n")
