"""rlx sets --xla_cpu_enable_concurrency_optimized_scheduler=false before JAX starts (rlx/xla_guard.py):
the flag that stopped the XLA:CPU deadlock of vmapped multi-seed programs on jaxlib 0.10.2."""
import json
import os
import subprocess
import sys

import pytest

from rlx import xla_guard

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
PROBE = ("import json, os, {mod}; import jax; jax.numpy.ones(1).block_until_ready(); "
         "from rlx import xla_guard; print(json.dumps([xla_guard.IN_EFFECT, os.environ.get('XLA_FLAGS', '')]))")


def run_python(code, *args, **env_extra):
    """Run `code` in a fresh interpreter from "/" without the caller's XLA_FLAGS / opt-out."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "RLX_KEEP_XLA_FLAGS")}
    env.update(env_extra)
    return subprocess.run([sys.executable, *args, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, cwd="/")


def probe(mod, **env_extra):
    out = run_python(PROBE.format(mod=mod), "-W", "error::RuntimeWarning", **env_extra)
    assert out.returncode == 0, out.stderr[-2000:]
    in_effect, flags = json.loads(out.stdout.strip().splitlines()[-1])
    return in_effect, flags


NEEDED = xla_guard.needed()  # jaxlib >= 0.10


def test_needed_follows_jaxlib_version():
    import jaxlib

    major, minor = (int(x) for x in jaxlib.__version__.split(".")[:2])
    assert NEEDED == ((major, minor) >= (0, 10))


@pytest.mark.parametrize("mod", ["rlx.envs", "rlx.run", "rlx.algorithms.ppo", "rlx.algorithms.pqn"])
def test_flag_set_on_import(mod):
    # run from "/": with an editable install `rlx` is then a namespace package whose __init__ does not run,
    # so the guard must come from the module itself
    in_effect, flags = probe(mod)
    assert in_effect == NEEDED and (f"{FLAG}=false" in flags.split()) == NEEDED


def test_user_flags_are_kept_and_user_choice_wins():
    in_effect, flags = probe("rlx.envs", XLA_FLAGS="--xla_cpu_multi_thread_eigen=true")
    assert in_effect == NEEDED
    assert flags.split() == ["--xla_cpu_multi_thread_eigen=true"] + [f"{FLAG}=false"] * NEEDED
    in_effect, flags = probe("rlx.envs", XLA_FLAGS=f"{FLAG}=true")
    assert not in_effect and flags == f"{FLAG}=true"


def test_opt_out():
    in_effect, flags = probe("rlx.envs", RLX_KEEP_XLA_FLAGS="1")
    assert not in_effect and FLAG not in flags


@pytest.mark.skipif(not NEEDED, reason="the guard is only applied for jaxlib >= 0.10")
def test_warns_when_jax_started_first():
    code = ("import warnings, jax; jax.numpy.ones(1).block_until_ready()\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always'); import rlx.xla_guard as g\n"
            "print(g.IN_EFFECT, any('XLA' in str(x.message) for x in w))")
    out = run_python(code)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]
