"""XLA flags rlx sets before JAX starts (rlx/xla_guard.py): one CPU device per usable core (the runner
shards seeds over them), and --xla_cpu_enable_concurrency_optimized_scheduler=false on jaxlib >= 0.10
(it stopped the XLA:CPU deadlock of vmapped multi-seed programs on jaxlib 0.10.2)."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from rlx import xla_guard

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler"
DEV = "--xla_force_host_platform_device_count"
PROBE = ("import json, os, {mod}; import jax; jax.numpy.ones(1).block_until_ready(); "
         "from rlx import xla_guard; print(json.dumps([xla_guard.IN_EFFECT, os.environ.get('XLA_FLAGS', ''), "
         "jax.local_device_count(), xla_guard.HOST_DEVICES]))")


def run_python(code, *args, **env_extra):
    """Run `code` in a fresh interpreter from "/" without the caller's XLA_FLAGS / opt-out."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "RLX_KEEP_XLA_FLAGS")}
    env.update(env_extra)
    return subprocess.run([sys.executable, *args, "-c", code], env=env, capture_output=True, text=True,
                          timeout=120, cwd="/")


def probe(mod, **env_extra):
    out = run_python(PROBE.format(mod=mod), "-W", "error::RuntimeWarning", **env_extra)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


NEEDED = xla_guard.needed()  # jaxlib >= 0.10
CORES = xla_guard.usable_cores()
DEV_FLAGS = [f"{DEV}={CORES}"] if CORES > 1 else []


def test_needed_follows_jaxlib_version():
    import jaxlib

    major, minor = (int(x) for x in jaxlib.__version__.split(".")[:2])
    assert NEEDED == ((major, minor) >= (0, 10))


def test_usable_cores_follow_affinity():
    assert CORES == len(os.sched_getaffinity(0))
    if shutil.which("taskset") is None:
        pytest.skip("taskset is not installed")
    out = subprocess.run(["taskset", "-c", "0", sys.executable, "-c",
                          "from rlx import xla_guard; print(xla_guard.usable_cores())"],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1"], out.stderr[-2000:]


@pytest.mark.parametrize("mod", ["rlx.envs", "rlx.run", "rlx.algorithms.ppo", "rlx.algorithms.pqn"])
def test_flags_set_on_import(mod):
    # run from "/": with an editable install `rlx` is then a namespace package whose __init__ does not run,
    # so the guard must come from the module itself
    in_effect, flags, n_dev, host_devices = probe(mod)
    assert in_effect == NEEDED and (f"{FLAG}=false" in flags.split()) == NEEDED
    assert n_dev == CORES and host_devices == (CORES if CORES > 1 else 0)


def test_user_flags_are_kept_and_user_choice_wins():
    in_effect, flags, n_dev, _ = probe("rlx.envs", XLA_FLAGS="--xla_cpu_multi_thread_eigen=true")
    assert in_effect == NEEDED
    assert flags.split() == ["--xla_cpu_multi_thread_eigen=true"] + [f"{FLAG}=false"] * NEEDED + DEV_FLAGS
    in_effect, flags, n_dev, host_devices = probe("rlx.envs", XLA_FLAGS=f"{FLAG}=true {DEV}=3")
    assert not in_effect and flags == f"{FLAG}=true {DEV}=3"
    assert n_dev == 3 and host_devices == 0


def test_opt_out():
    in_effect, flags, n_dev, host_devices = probe("rlx.envs", RLX_KEEP_XLA_FLAGS="1")
    assert not in_effect and FLAG not in flags and DEV not in flags
    assert n_dev == 1 and host_devices == 0


@pytest.mark.skipif(not NEEDED and CORES == 1, reason="nothing to apply: jaxlib < 0.10 on one core")
def test_warns_when_jax_started_first():
    code = ("import warnings, jax; jax.numpy.ones(1).block_until_ready()\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always'); import rlx.xla_guard as g\n"
            "print(g.IN_EFFECT, g.HOST_DEVICES, jax.local_device_count(), any('XLA' in str(x.message) for x in w))")
    out = run_python(code)
    assert out.stdout.split() == ["False", "0", "1", "True"], out.stderr[-2000:]
