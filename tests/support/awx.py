"""What AWX does with a custom credential type before it starts ansible-runner, rewritten
here from AWX's CredentialType.inject_credential (awx/main/models/credential/__init__.py)
so a test can run a job the way AWX would, with no AWX server:

* the namespace is the credential's inputs that have a value (empty strings are left out,
  so `{% if field %}` sees them as missing);
* each `file` template is rendered with Jinja's ImmutableSandboxedEnvironment into a new
  file (mkstemp) under `<private_data_dir>/env`, mode 0660, and its path *inside the
  execution environment* (the private data directory is mounted at /runner) is published
  as `tower.filename` (one file) or `tower.filename.<name>` (`template.<name>` labels);
* each `env` template is rendered the same way; the result is the job's environment
  (AWX writes it to `env/envvars` for ansible-runner).
"""

from __future__ import annotations

import os
import pathlib
import stat
import tempfile
import types

import yaml
from jinja2 import sandbox

CONTAINER_ROOT = "/runner"  # where ansible-runner mounts the private data directory


def load_credential_type(path: pathlib.Path) -> dict:
    return yaml.safe_load(path.read_text())


def inject(credential_type: dict, inputs: dict[str, str], private_data_dir: pathlib.Path,
           ) -> dict[str, str]:
    """The environment variables AWX would give a job using a credential of this type with
    these inputs; writes the file templates under private_data_dir/env."""
    injectors = credential_type.get("injectors") or {}
    namespace: dict = {name: value for name, value in inputs.items() if value not in ("", None)}
    tower = types.SimpleNamespace()
    namespace["tower"] = tower
    env_dir = private_data_dir / "env"
    env_dir.mkdir(parents=True, exist_ok=True)
    jinja = sandbox.ImmutableSandboxedEnvironment()
    for label, template in (injectors.get("file") or {}).items():
        handle, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(handle, "w") as out:
            out.write(jinja.from_string(template).render(**namespace))
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IWGRP)
        inside = f"{CONTAINER_ROOT}/{pathlib.Path(path).relative_to(private_data_dir)}"
        if "." not in label:
            tower.filename = inside
        else:
            if not isinstance(getattr(tower, "filename", None), types.SimpleNamespace):
                tower.filename = types.SimpleNamespace()
            setattr(tower.filename, label.split(".", 1)[1], inside)
    return {name: jinja.from_string(template).render(**namespace)
            for name, template in (injectors.get("env") or {}).items()}


def host_path(container_path: str, private_data_dir: pathlib.Path) -> pathlib.Path:
    """A /runner/... path as seen from the host."""
    return private_data_dir / pathlib.PurePosixPath(container_path).relative_to(CONTAINER_ROOT)
