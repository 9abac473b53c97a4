"""Credentials for the agent's own Kubernetes client (issue 4 "Discovery engine", issue 7
memory): kubeconfig with a token or client certificates, in-cluster service account, and
clear errors for what is not supported (exec / auth-provider plugins, basic auth)."""

from __future__ import annotations

import ssl

import pytest

from coral_lib.discovery import kubeclient
from tests.kubeclient.conftest import b64, write_kubeconfig
from tests.support.kubeapi import tls


def test_kubeconfig_with_token_lists_pods_and_reads_the_node(kubeapi):
    """The fixture's own kubeconfig: certificate-authority-data + token, current-context."""
    api = kubeclient.Client(kubeclient.from_kubeconfig(kubeapi.kubeconfig_path))
    assert api.list_pods()["kind"] == "PodList"
    node = api.read_node("node-a")
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == "node-a"


def test_named_context_and_token_file(kubeapi, tmp_path):
    """A context other than the current one; tokenFile and certificate-authority as paths
    relative to the kubeconfig's directory."""
    (tmp_path / "token").write_text(kubeapi.token + "\n")
    (tmp_path / "ca.crt").write_bytes(kubeapi.ca_pem)
    path = write_kubeconfig(tmp_path / "config", server=kubeapi.url, context="other",
                            cluster={"certificate-authority": "ca.crt"},
                            user={"tokenFile": "token"})
    creds = kubeclient.from_kubeconfig(path, context="other")
    assert kubeclient.Client(creds).read_node("node-b")["metadata"]["name"] == "node-b"
    with pytest.raises(kubeclient.KubeConfigError, match="no context named 'missing'"):
        kubeclient.from_kubeconfig(path, context="missing")


@pytest.mark.parametrize("as_files", [False, True], ids=["data", "files"])
def test_client_certificate_kubeconfig(cert_kubeapi, tmp_path, as_files):
    """client-certificate(-data) + client-key(-data) against a server that requires them."""
    server, certs = cert_kubeapi
    user = ({"client-certificate": str(certs.cert_path), "client-key": str(certs.key_path)}
            if as_files else {"client-certificate-data": b64(certs.cert_pem),
                              "client-key-data": b64(certs.key_pem)})
    path = write_kubeconfig(tmp_path / "config", server=server.url, user=user,
                            cluster={"certificate-authority-data": b64(server.ca_pem)})
    api = kubeclient.Client(kubeclient.from_kubeconfig(path))
    assert api.read_node("node-a")["metadata"]["name"] == "node-a"


def test_client_certificate_is_really_required(cert_kubeapi, tmp_path):
    """The same server refuses a client without a certificate: the cert test can fail."""
    server, _certs = cert_kubeapi
    path = write_kubeconfig(tmp_path / "config", server=server.url,
                            cluster={"certificate-authority-data": b64(server.ca_pem)})
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        kubeclient.Client(kubeclient.from_kubeconfig(path)).read_node("node-a")


def test_in_cluster_service_account(kubeapi, tmp_path):
    """KUBERNETES_SERVICE_HOST/PORT + the service account's token and ca.crt."""
    (tmp_path / "token").write_text(kubeapi.token)
    (tmp_path / "ca.crt").write_bytes(kubeapi.ca_pem)
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(kubeapi.port)}
    creds = kubeclient.in_cluster(environ=env, sa_dir=str(tmp_path))
    assert creds.server == f"https://127.0.0.1:{kubeapi.port}"
    assert kubeclient.Client(creds).list_pods()["kind"] == "PodList"


def test_in_cluster_errors_say_what_is_missing(tmp_path):
    with pytest.raises(kubeclient.KubeConfigError, match="KUBERNETES_SERVICE_HOST"):
        kubeclient.in_cluster(environ={}, sa_dir=str(tmp_path))
    env = {"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    with pytest.raises(kubeclient.KubeConfigError, match="service account"):
        kubeclient.in_cluster(environ=env, sa_dir=str(tmp_path / "absent"))


def test_in_cluster_ipv6_service_host(tmp_path):
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_bytes(b"")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert kubeclient.in_cluster(environ=env, sa_dir=str(tmp_path)).server == (
        "https://[fd00::1]:443")


def test_wrong_ca_fails_and_insecure_skip_verify_connects(kubeapi, tmp_path):
    other_ca, _key = tls.make_ca("some-other-ca")
    user = {"token": kubeapi.token}
    wrong = write_kubeconfig(tmp_path / "wrong", server=kubeapi.url, user=user,
                             cluster={"certificate-authority-data": b64(other_ca)})
    with pytest.raises(ssl.SSLCertVerificationError):
        kubeclient.Client(kubeclient.from_kubeconfig(wrong)).read_node("node-a")
    insecure = write_kubeconfig(tmp_path / "insecure", server=kubeapi.url, user=user,
                                cluster={"insecure-skip-tls-verify": True})
    assert kubeclient.Client(kubeclient.from_kubeconfig(insecure)).read_node("node-a")


def test_tls_server_name(kubeapi, tmp_path):
    """tls-server-name: verify the serving certificate against a name that is not the
    address dialled (the fixture's certificate names `kubernetes`, not `localhost.x`)."""
    cluster = {"certificate-authority-data": b64(kubeapi.ca_pem)}
    user = {"token": kubeapi.token}
    good = write_kubeconfig(tmp_path / "good", server=kubeapi.url, user=user,
                            cluster={**cluster, "tls-server-name": "kubernetes"})
    assert kubeclient.Client(kubeclient.from_kubeconfig(good)).read_node("node-a")
    bad = write_kubeconfig(tmp_path / "bad", server=kubeapi.url, user=user,
                           cluster={**cluster, "tls-server-name": "not-the-server.example"})
    with pytest.raises(ssl.SSLCertVerificationError):
        kubeclient.Client(kubeclient.from_kubeconfig(bad)).read_node("node-a")


@pytest.mark.parametrize(("user", "message"), [
    ({"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}},
     "exec plugins are not supported"),
    ({"auth-provider": {"name": "gcp"}}, "auth-provider plugins are not supported"),
    ({"username": "admin", "password": "pw"}, "basic auth"),
    ({"client-certificate-data": b64(b"x")}, "client-certificate and client-key go together"),
    ({"client-key-data": "%%%not base64"}, "cannot read client-key"),
])
def test_unsupported_or_broken_user_is_a_clear_error(tmp_path, user, message):
    """The error names the kubeconfig, the user and what would be accepted."""
    path = write_kubeconfig(tmp_path / "config", server="https://127.0.0.1:6443", user=user)
    with pytest.raises(kubeclient.KubeConfigError, match=message) as err:
        kubeclient.from_kubeconfig(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(("text", "message"), [
    ("- just\n- a list\n", "expected a mapping"),
    ("kind: Config\n", "no current-context"),
    ("{not yaml: [", "cannot read it"),
])
def test_broken_kubeconfig_is_a_clear_error(tmp_path, text, message):
    path = tmp_path / "config"
    path.write_text(text)
    with pytest.raises(kubeclient.KubeConfigError, match=message):
        kubeclient.from_kubeconfig(str(path))


def test_plain_http_server_is_refused(tmp_path):
    path = write_kubeconfig(tmp_path / "config", server="http://127.0.0.1:8080")
    with pytest.raises(kubeclient.KubeConfigError, match="must be an https:// URL"):
        kubeclient.from_kubeconfig(path)


def test_missing_kubeconfig_file(tmp_path):
    with pytest.raises(kubeclient.KubeConfigError, match="cannot read it"):
        kubeclient.from_kubeconfig(str(tmp_path / "absent"))
