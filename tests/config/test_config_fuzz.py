"""Fuzz the loader: random YAML-able structures and random text give a config or a
ConfigError with a one-line message, never any other exception."""

from __future__ import annotations

import atexit
import pathlib
import shutil
import tempfile

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coral_lib import config

KEYS = ["agent", "mode", "id", "runtime", "colony", "address", "caFile", "secret", "secretFile",
        "discovery", "kubernetes", "host", "includeNamespaces", "includeLabels",
        "excludeNamespaces", "excludeLabels", "pollInterval", "resyncInterval", "overrides",
        "selector", "service", "podLabel", "namespace", "podName", "process", "port", "services",
        "name", "health", "endpoint", "interval", "type", "labels", "listen", "dataDir"]

scalars = (st.none() | st.booleans() | st.integers() | st.floats()
           | st.text(max_size=20) | st.sampled_from(["30s", "5m", "x=y", "{{ NODE_NAME }}",
                                                     "{{ MISSING }}", "/h", "1.2.3.4:5"]))
keys = st.sampled_from(KEYS) | st.text(max_size=10) | st.integers() | st.booleans()
structures = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=5),
    max_leaves=25,
)

EXAMPLE = yaml.safe_load(
    (pathlib.Path(__file__).parent / "testdata" / "full.yaml").read_text()
    .replace("{{ HOST }}", "h")
)


def mutated(node: object) -> st.SearchStrategy[object]:
    """The full valid document with any subtree possibly replaced by a random one."""
    if isinstance(node, dict):
        inner = st.fixed_dictionaries({k: mutated(v) for k, v in node.items()})
    elif isinstance(node, list):
        inner = st.tuples(*[mutated(v) for v in node]).map(list)
    else:
        inner = st.just(node)
    return st.one_of(inner, inner, structures)


ENV = {"NODE_NAME": "n1"}
_DIR = pathlib.Path(tempfile.mkdtemp(prefix="coral-config-fuzz-"))
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)  # made at import: no fixture owns it


def _check(content: str | bytes) -> None:
    path = _DIR / "agent-config.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", errors="surrogatepass")
    for load in (config.load_agent_config, config.load_colony_config):
        try:
            result = load(path, environ=ENV)
        except config.ConfigError as exc:
            message = str(exc)
            assert message.startswith(f"config file {path}")
            assert "\n" not in message
        else:
            assert result is not None


FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(structures)
def test_config_fuzz_random_yaml_gives_clear_errors_only(data):
    _check(yaml.safe_dump(data))


@FUZZ
@given(mutated(EXAMPLE))
def test_config_fuzz_mutated_valid_file_gives_clear_errors_only(data):
    _check(yaml.safe_dump(data))


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_config_fuzz_random_text_gives_clear_errors_only(text):
    if isinstance(text, str):
        text = text.encode("utf-8", errors="surrogatepass")
    _check(text)
