"""Copy-out: every algorithm file runs on its own against the installed `rlx` package.

The README promises "copy one file into your research code". Each test copies one
algorithms/<name>.py into an empty temporary folder outside the checkout and runs it there as
a script (cwd = that folder, PYTHONPATH unset), so the checkout's algorithms/ and tests/ are
not importable and only the installed package can supply `rlx` and `rlx.envs`. Each run is a
couple of updates with a tiny network; it must exit 0 and write summary.json with a finite
final return per seed.
"""
import ast
import dataclasses
import glob
import importlib
import json
import math
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGOS = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "algorithms", "*.py"))
               if not p.endswith("__init__.py"))

# Tiny runs: a couple of updates each. Keys are Config field names; a tuple of names lists the
# spellings accepted (the first one the file's Config has is used), so a rename is followed,
# and a field none of whose names exists fails the test instead of silently running big.
TINY = {
    "ppo": ("CartPole-v1", {"total_timesteps": 64, "num_envs": 2, "num_steps": 16, "update_epochs": 1,
                            "num_minibatches": 1, "hidden": "8"}),
    "mdpo": ("CartPole-v1", {"total_timesteps": 64, "num_envs": 2, "num_steps": 16, "sgd_steps": 1,
                             "vf_epochs": 1, "vf_minibatch_size": 8, "hidden": "8"}),
    "mdpo_offpolicy": ("Pendulum-v1", {"total_timesteps": 64, "num_envs": 2, "steps_per_update": 16,
                                       "buffer_size": 128, "batch_size": 8, "learning_starts": 16,
                                       "hidden": "8"}),
    "pdppo": ("lot-sizing/15x5", {"total_timesteps": 64, "num_envs": 2, "num_steps": 16, "buffer_chunks": 1,
                                  "update_epochs": 1, "num_minibatches": 1, "actor_hidden": "8",
                                  "critic_hidden": "8"}),
    "pqn": ("CartPole-v1", {"total_timesteps": 64, "num_envs": 2, "num_steps": 16,
                            ("update_epochs", "num_epochs"): 1, "num_minibatches": 1,
                            ("hidden", "hidden_size"): "8"}),
    "pqn_rnn": ("CartPole-v1", {"total_timesteps": 64, "num_envs": 2, "num_steps": 16,
                                ("update_epochs", "num_epochs"): 1, "num_minibatches": 1,
                                ("hidden", "hidden_size"): "8"}),
    # streaming: one env step per update and no evaluation, so the final return is the training
    # episodes ending in the last 5% of updates: Pendulum's 200-step episodes end at step 1000
    "stream_ac": ("Pendulum-v1", {"total_timesteps": 1000, "hidden": "8"}),
    "stream_q": ("CartPole-v1", {"total_timesteps": 1000, "hidden": "8"}),
    "stream_td": ("Pendulum-v1", {"total_timesteps": 1000, "hidden": "8"}),
}


def _flags(name):
    env, tiny = TINY[name]
    fields = {f.name for f in dataclasses.fields(importlib.import_module(f"rlx.algorithms.{name}").Config)}
    flags = ["--env", env]
    for names, value in tiny.items():
        names = names if isinstance(names, tuple) else (names,)
        found = [n for n in names if n in fields]
        assert found, f"{name}.Config has none of {names}; update TINY in tests/test_copy_out.py"
        flags += ["--" + found[0].replace("_", "-"), str(value)]
    return flags


def _isolated_env():
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP", "PYTHONHOME")}
    env["PYTHONNOUSERSITE"] = "1"
    return env


@pytest.fixture
def outside(tmp_path):
    d = tmp_path / "copy"
    d.mkdir()
    assert not str(d).startswith(ROOT + os.sep), "the temporary folder must lie outside the checkout"
    return d


def test_isolation_only_the_installed_package_is_importable(outside):
    """In the environment the copies run in, `rlx` comes from the installed package and the
    checkout's algorithms/ and tests/ folders are not importable as top-level modules."""
    code = ("import importlib.util as u, json, rlx, rlx.envs;"
            "print(json.dumps([u.find_spec('algorithms') is None, u.find_spec('toy_algo') is None,"
            " u.find_spec('conftest') is None, u.find_spec('rlx.algorithms.ppo') is not None]))")
    p = subprocess.run([sys.executable, "-c", code], cwd=outside, env=_isolated_env(), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.strip().splitlines()[-1]) == [True, True, True, True]


@pytest.mark.parametrize("name", ALGOS)
def test_algorithm_imports_only_rlx_core_and_third_party(name):
    """A copied file must not lean on another algorithm file (rlx.algorithms.*) or on anything
    next to it in the checkout; only rlx core modules, rlx.envs and installed third-party packages."""
    with open(os.path.join(ROOT, "algorithms", f"{name}.py")) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{name}.py: relative import 'from {'.' * node.level}{node.module or ''}'"
            mods = [node.module] + ([f"{node.module}.{a.name}" for a in node.names] if node.module == "rlx" else [])
        elif isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        else:
            continue
        for m in mods:
            assert not m.startswith(("rlx.algorithms", "algorithms", "tests", "toy_algo")) and m not in ALGOS, \
                f"{name}.py imports {m}: a copied file may import only rlx core modules and rlx.envs"


@pytest.mark.parametrize("name", ALGOS)
def test_copied_file_runs_outside_the_checkout(name, outside):
    assert name in TINY, f"new algorithm {name}.py: add its tiny run flags to TINY in tests/test_copy_out.py"
    shutil.copy(os.path.join(ROOT, "algorithms", f"{name}.py"), outside / f"{name}.py")
    assert sorted(os.listdir(outside)) == [f"{name}.py"]
    cmd = [sys.executable, f"{name}.py", *_flags(name), "--num-seeds", "2", "--out", "OUT", "--no-progress",
           "--eval-episodes", "2"]
    p = subprocess.run(cmd, cwd=outside, env=_isolated_env(), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{' '.join(cmd)}\n--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-5000:]}"
    with open(outside / "OUT" / "summary.json") as f:
        summary = json.load(f)
    final = summary["final_return"]
    assert len(final) == 2, summary
    assert all(x is not None and math.isfinite(x) for x in final), final
    assert math.isfinite(summary["final_return_mean"])
