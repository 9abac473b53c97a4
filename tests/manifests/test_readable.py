"""Issue 13, "Manifests as people read them": `coral manifests render` emits no YAML anchors
or aliases, keeps a stable key order (Kubernetes' conventional apiVersion, kind, metadata,
spec ...), and every object passes `kubectl apply --dry-run=server` against the API fixture."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from coral_lib import cli, manifests
from coral_lib.operator import manifests as manifests_text
from tests.kubeapi.conftest import KUBECTL
from tests.manifests.conftest import VARIANTS
from tests.support.kubeapi import KubeAPIServer

# Kinds of CRDs the fixture does not serve (cert-manager's); a cluster needs cert-manager.
NOT_SERVED = {"cert-manager.io/v1"}


def _cli_render(capsys, tmp_path, mode: str) -> str:
    assert cli.main(["manifests", "render", "--mode", mode,
                     "--tls-dir", str(tmp_path / "tls")]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("mode", sorted(manifests.MODES))
def test_manifests_have_no_yaml_aliases(capsys, tmp_path, mode: str) -> None:
    """The webhook Deployment shares one httpGet dict between its probes: written out twice."""
    out = _cli_render(capsys, tmp_path, mode)
    events = list(yaml.parse(out))
    assert not [e for e in events if isinstance(e, yaml.AliasEvent)]
    assert not [e for e in events if getattr(e, "anchor", None)]
    assert "&id0" not in out and "*id0" not in out


@pytest.mark.parametrize("mode", sorted(manifests.MODES))
def test_manifests_render_twice_identically_in_conventional_key_order(
        capsys, tmp_path, mode: str) -> None:
    first, second = _cli_render(capsys, tmp_path, mode), _cli_render(capsys, tmp_path, mode)
    assert first == second
    for obj in yaml.safe_load_all(first):
        keys = list(obj)
        assert keys[:3] == ["apiVersion", "kind", "metadata"], keys
        if "spec" in obj:
            assert keys[3] == "spec", keys
        assert list(obj["metadata"])[0] == "name"
        if "namespace" in obj["metadata"]:
            assert list(obj["metadata"])[1] == "namespace"


@pytest.fixture(scope="module")
def kubeapi(tmp_path_factory):
    with KubeAPIServer(tmp_path_factory.mktemp("kubeapi")) as server:
        yield server


def _stored(server: KubeAPIServer, objects: list[dict]) -> list[str]:
    """Which of `objects` (other than namespaces) the fixture holds."""
    from tests.support.kubeapi import errors, resources

    held = []
    for obj in objects:
        if obj["kind"] == "Namespace" or obj["apiVersion"] in NOT_SERVED:
            continue
        rt = resources.by_kind(obj["apiVersion"], obj["kind"])
        try:
            server.store.get(rt.key, obj["metadata"]["name"],
                             namespace=obj["metadata"].get("namespace"))
            held.append(f"{obj['kind']}/{obj['metadata']['name']}")
        except (errors.ApiError, KeyError):
            continue
    return held


@pytest.mark.parametrize("variant", VARIANTS, ids=[v[0] for v in VARIANTS])
def test_manifests_pass_server_dry_run(kubeapi, tls, tmp_path, variant) -> None:
    """Every object goes through `kubectl apply --dry-run=server`: the fixture runs
    admission and validation and stores nothing. The namespaces are created for real first
    (a dry run of a namespaced object in a namespace that does not exist is a 404 on a real
    API server too)."""
    _, mode, overrides = variant
    objects = manifests.render(mode, manifests.ManifestSettings(tls=tls, **overrides))
    served = [o for o in objects if o["apiVersion"] not in NOT_SERVED]
    for obj in served:
        if obj["kind"] == "Namespace" and not _exists(kubeapi, obj["metadata"]["name"]):
            kubeapi.store.create(obj)
    for obj in objects:
        ns = obj["metadata"].get("namespace")
        if ns and not _exists(kubeapi, ns):
            kubeapi.store.create({"apiVersion": "v1", "kind": "Namespace",
                                  "metadata": {"name": ns}})
    path = tmp_path / "objects.yaml"
    path.write_text(manifests_text.dumps(served, output="yaml"))
    rv_before = kubeapi.store.rv
    done = subprocess.run([KUBECTL, "--kubeconfig", kubeapi.kubeconfig_path, "apply",
                           "--dry-run=server", "-f", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == len(served), done.stdout
    assert all(line.endswith("(server dry run)") for line in lines), done.stdout
    assert kubeapi.store.rv == rv_before  # nothing written, not even a resourceVersion
    assert _stored(kubeapi, served) == []


def _exists(server: KubeAPIServer, namespace: str) -> bool:
    from tests.support.kubeapi import errors

    try:
        server.store.get("namespaces", namespace)
        return True
    except errors.ApiError:
        return False


def test_server_dry_run_refuses_an_invalid_object(kubeapi, tls, tmp_path) -> None:
    """The dry run can fail: a DaemonSet whose selector does not match its template."""
    objects = manifests.render("daemonset", manifests.ManifestSettings(tls=tls))
    ds = next(o for o in objects if o["kind"] == "DaemonSet")
    ds["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "something-else"}
    if not _exists(kubeapi, ds["metadata"]["namespace"]):
        kubeapi.store.create({"apiVersion": "v1", "kind": "Namespace",
                              "metadata": {"name": ds["metadata"]["namespace"]}})
    path = tmp_path / "ds.yaml"
    path.write_text(manifests_text.dumps([ds], output="yaml"))
    done = subprocess.run([KUBECTL, "--kubeconfig", kubeapi.kubeconfig_path, "apply",
                           "--dry-run=server", "-f", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert 'DaemonSet "coral-agent" is invalid' in done.stderr


def test_server_dry_run_patch_of_existing_objects_changes_nothing(kubeapi, tls, tmp_path) -> None:
    """dryRun=All on the patch path: the objects exist, the dry run of a changed version
    runs validation and stores nothing."""
    objects = manifests.render("daemonset", manifests.ManifestSettings(tls=tls,
                                                                       namespace="dry-patch"))
    path = tmp_path / "objects.yaml"
    path.write_text(manifests_text.dumps(objects, output="yaml"))
    applied = subprocess.run([KUBECTL, "--kubeconfig", kubeapi.kubeconfig_path, "apply", "-f",
                              str(path)], capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    ds = next(o for o in objects if o["kind"] == "DaemonSet")
    stored = kubeapi.store.get("daemonsets.apps", ds["metadata"]["name"], namespace="dry-patch")
    ds["metadata"]["labels"]["changed"] = "yes"
    path.write_text(manifests_text.dumps([ds], output="yaml"))
    rv_before = kubeapi.store.rv
    done = subprocess.run([KUBECTL, "--kubeconfig", kubeapi.kubeconfig_path, "apply",
                           "--dry-run=server", "-f", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "configured (server dry run)" in done.stdout
    after = kubeapi.store.get("daemonsets.apps", ds["metadata"]["name"], namespace="dry-patch")
    assert kubeapi.store.rv == rv_before
    assert after["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]
    assert "changed" not in after["metadata"]["labels"]
