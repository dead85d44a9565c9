"""Importing rlx changes nothing in the user's process: no environment variable (XLA_FLAGS included),
no JAX device, no started backend. The command line makes its XLA settings itself (tests/test_devices.py)."""
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.timeout(300)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EVERY_MODULE = r"""
import json, os, pkgutil, importlib, sys
import jax  # jax itself sets TF_CPP_MIN_LOG_LEVEL and TPU_SKIP_MDS_QUERY on import (not rlx's doing)
before = dict(os.environ)
import rlx, rlx.algorithms, rlx.envs
names = []
for pkg in (rlx, rlx.algorithms, rlx.envs):
    for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
        names.append(m.name)
for name in names:
    importlib.import_module(name)
import jax._src.xla_bridge as xb
started = bool(xb._backends)  # before asking for devices: no rlx module may start JAX's backends
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
print(json.dumps({"modules": names, "changed": changed, "started": started, "devices": len(jax.devices()),
                  "xla_flags": os.environ.get("XLA_FLAGS")}))
"""


def fresh(code, cwd):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "RLX_KEEP_XLA_FLAGS")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=240)


@pytest.mark.parametrize("cwd", [ROOT, "/"])  # from "/" an editable install can make rlx a namespace package
def test_importing_every_rlx_module_changes_nothing(cwd):
    p = fresh(EVERY_MODULE, cwd)
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert {"rlx.run", "rlx.cli", "rlx.devices", "rlx.returns", "rlx.algorithms.ppo", "rlx.envs.gymnax_env"} <= set(r["modules"])
    assert r["changed"] == [] and r["xla_flags"] is None
    assert not r["started"] and r["devices"] == 1


def test_issue_one_liner_prints_none_1():
    p = fresh("import os, jax, rlx.returns, rlx.envs, rlx.run; print(os.environ.get('XLA_FLAGS'), len(jax.devices()))",
              ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.split() == ["None", "1"]
