"""Issue 15, "A leaner agent": the DaemonSet agent runs with PYTHONOPTIMIZE=2 (its manifest
sets it), so the image must carry optimization-2 bytecode for every module that agent
loads -- its packages and the standard library. The image sets PYTHONDONTWRITEBYTECODE
and the agent could not cache bytecode anyway: a module without it would be compiled from
source at every start, costing the memory and time -OO is there to save."""

from __future__ import annotations

import json
import uuid

from coral_lib.manifests import daemonset
from tests.image import cri_helpers

# What `coral agent node` imports to run (tests/lean/test_lazy_agent.py keeps the rest out),
# with the config models its forked validator loads and the metrics it serves.
PROBE = """
import importlib, json, sys
for name in ("coral_lib.cli", "coral_lib.commands.agent", "coral_lib.commands.agent_node",
             "coral_lib.agent.node", "coral_lib.agent.observe", "coral_lib.endpoint",
             "coral_lib.metrics", "coral_lib.config", "coral_lib.ops.cri", "coral_lib.pagecache",
             "coral_lib.heap"):
    importlib.import_module(name)
specs = [m.__spec__ for m in list(sys.modules.values()) if getattr(m, "__spec__", None)]
sources = [s for s in specs if s.origin and s.origin.endswith(".py")]
missing = sorted(s.origin for s in sources
                 if not (s.cached and s.cached.endswith(".opt-2.pyc")
                         and __import__("os").path.exists(s.cached)))
print(json.dumps({"optimize": sys.flags.optimize, "modules": len(sources),
                  "missing": missing}))
"""


def test_image_has_optimization_2_bytecode_for_every_module_the_daemonset_agent_loads(
        node, agent_image):
    pod = node.run_pod("bytecode-probe", "coral-system", str(uuid.uuid4()), containers=[])
    env = {daemonset.OPTIMIZE_ENV["name"]: daemonset.OPTIMIZE_ENV["value"]}
    cid = cri_helpers.start(node, pod, name="coral-agent", image=agent_image.ref,
                            argv=["sleep", "infinity"], env=env)
    code, out, err = cri_helpers.exec_sync(node, cid, ["python3", "-c", PROBE])
    assert code == 0, err
    found = json.loads(out)
    assert found["optimize"] == 2
    assert found["modules"] > 300  # the real import set: grpc, cryptography, protobuf...
    assert found["missing"] == []
    node.remove_pod(pod)
