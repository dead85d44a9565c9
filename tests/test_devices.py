"""rlx.devices: `use_all_cpu_cores()` (one XLA CPU device per usable core; on jaxlib >= 0.10 the
scheduler flag that avoids the XLA:CPU deadlock) as the command line applies it, and the helpers
behind it. Each case runs a fresh interpreter, since XLA reads its flags once, when JAX starts."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from rlx import devices

pytestmark = pytest.mark.timeout(300)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHED = "--xla_cpu_enable_concurrency_optimized_scheduler"
DEV = "--xla_force_host_platform_device_count"
CORES = len(os.sched_getaffinity(0))
PROBE = ("import json, os, warnings, jax, rlx.devices as d; warnings.simplefilter('error');{pre} o = d.use_all_cpu_cores(); "
         "print(json.dumps([o.scheduler_guard, o.cpu_devices, os.environ.get('XLA_FLAGS', ''), jax.local_device_count()]))")


def fresh(code, *prefix, **env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "RLX_KEEP_XLA_FLAGS")}
    env.update(env_extra)
    return subprocess.run([*prefix, sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=240, cwd="/")


def probe(pre="", **env_extra):
    p = fresh(PROBE.format(pre=pre), **env_extra)
    assert p.returncode == 0, p.stderr[-2000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("version,needed", [("0.9.2", False), ("0.10.2", True), ("0.11.0", True), ("1.0.0", True)])
def test_scheduler_guard_follows_the_jaxlib_version(monkeypatch, version, needed):
    monkeypatch.setattr(devices.importlib.metadata, "version", lambda pkg: version)
    assert devices.scheduler_guard_needed() is needed


def test_one_cpu_device_per_core_and_the_guard_where_needed():
    guard, n_asked, flags, n_dev = probe()
    needed = devices.scheduler_guard_needed()
    assert guard == needed and (f"{SCHED}=false" in flags.split()) == needed
    assert n_dev == CORES and n_asked == (CORES if CORES > 1 else 0)
    # a second call adds nothing
    guard2, _, flags2, _ = probe(pre=" d.use_all_cpu_cores();")
    assert flags2 == flags


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset is not installed")
def test_devices_follow_the_cpu_affinity():
    p = fresh(PROBE.format(pre=""), "taskset", "-c", "0")
    assert p.returncode == 0, p.stderr[-2000:]
    _, n_asked, flags, n_dev = json.loads(p.stdout.strip().splitlines()[-1])
    assert n_dev == 1 and n_asked == 0 and DEV not in flags


def test_flags_you_set_win():
    guard, n_asked, flags, n_dev = probe(XLA_FLAGS=f"--xla_cpu_multi_thread_eigen=true {SCHED}=true {DEV}=3")
    assert not guard and n_asked == 0 and n_dev == 3
    assert flags == f"--xla_cpu_multi_thread_eigen=true {SCHED}=true {DEV}=3"


def test_opt_out_keeps_xla_defaults():
    guard, n_asked, flags, n_dev = probe(RLX_KEEP_XLA_FLAGS="1")
    assert (guard, n_asked, flags, n_dev) == (False, 0, "", 1)


@pytest.mark.skipif(CORES == 1 and not devices.scheduler_guard_needed(), reason="nothing to apply on one core")
def test_warns_and_changes_nothing_when_jax_started_first():
    p = fresh("import warnings, os, jax; jax.numpy.ones(1).block_until_ready(); import rlx.devices as d\n"
              "with warnings.catch_warnings(record=True) as w:\n"
              "    warnings.simplefilter('always'); o = d.use_all_cpu_cores()\n"
              "print(o.cpu_devices, os.environ.get('XLA_FLAGS'), jax.local_device_count(), any('XLA' in str(x.message) for x in w))")
    assert p.stdout.split() == ["0", "None", "1", "True"], p.stderr[-2000:]


@pytest.mark.skipif(CORES < 2, reason="one core: one device either way")
def test_the_command_line_uses_every_core(tmp_path):
    out = str(tmp_path / "cli")
    p = fresh(f"import sys; sys.argv = ['toy', '--num-seeds', '2', '--total-timesteps', '256', '--out', {out!r}]; "
              f"sys.path.insert(0, {os.path.join(ROOT, 'tests')!r}); import toy_algo; from rlx.cli import main; "
              f"main(toy_algo.Config, toy_algo.make_train, name='toy')")
    assert p.returncode == 0, p.stderr[-2000:]
    assert f"on {CORES}x cpu" in p.stdout and f"({CORES} in use)" in p.stdout
    s = json.load(open(os.path.join(out, "summary.json")))
    assert s["devices"] == CORES and f"{DEV}={CORES}" in s["versions"]["XLA_FLAGS"]


def test_parse_bytes_and_memory_limit(monkeypatch):
    assert devices.parse_bytes("8G") == 8 * 2**30 and devices.parse_bytes("1.5GiB") == int(1.5 * 2**30)
    assert devices.parse_bytes("512M") == 512 * 2**20 and devices.parse_bytes("1000") == 1000
    import jax

    cpu = jax.devices("cpu")[0]
    free = devices.available_memory(cpu)
    assert free > 0
    monkeypatch.setenv("RLX_MEMORY_LIMIT", "1M")
    assert devices.available_memory(cpu) == 2**20
