"""XLA settings that rlx applies before JAX starts its backends.

1. One CPU device per core. XLA:CPU runs a program on one device, and a vmapped multi-seed program
   leaves cores idle (PureJaxRL's PPO at 16 seeds used 1.5 of 2 cores).
   `--xla_force_host_platform_device_count=<usable cores>` gives JAX one CPU device per core, and the
   runner (`rlx.run`) shards the seed/sweep axis over them, so seeds train in parallel on every core.
   Measured on a 2-core CPU (jax 0.9.2), 16 seeds vmapped: PPO CartPole 1e5 steps 16.5-18.2 s on one
   device vs 8.4-8.8 s on two; PQN CartPole 5e4 steps 30.7-36.6 s vs 23.0-24.9 s. Single-seed
   programs run on one device as before (no change measured). GPU/TPU runs are unaffected: their
   devices are the default ones.
2. XLA's CPU runtime in jaxlib 0.10.2 deadlocked vmapped multi-seed training programs on a 2-core
   CPU: every thread parked on a futex, no CPU used, `block_until_ready` never returning. Seen with
   rlx's own PPO (16 seeds, 2 of 6 runs) and, in every run, with PureJaxRL's PPO (4 seeds); with
   `--xla_cpu_enable_concurrency_optimized_scheduler=false` the same programs finished every time
   (benchmarks/results/xla_cpu_hang.md). That flag costs speed (the scheduler runs independent ops
   on both cores), so it is applied only for jaxlib >= 0.10: on jaxlib 0.9.2, which Python 3.11
   installs pin, none of these programs hung.

Applied on import by `rlx.envs` (every algorithm file imports it) and `rlx.run`, and by
`rlx/__init__` where that runs (an editable install makes `rlx` a namespace package, whose
`__init__` does not run, when it is imported from outside the repository). A flag you name in
XLA_FLAGS yourself wins; RLX_KEEP_XLA_FLAGS=1 keeps XLA's defaults for both.
"""
import importlib.metadata
import os
import sys
import warnings

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
DEVICES = "--xla_force_host_platform_device_count"


def needed() -> bool:
    """True for jaxlib >= 0.10 (the deadlock was seen on 0.10.2; later versions are unchecked)."""
    try:
        major, minor = (int(x) for x in importlib.metadata.version("jaxlib").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return True
    return (major, minor) >= (0, 10)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under taskset or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _started() -> bool:
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bridge is not None and bool(getattr(bridge, "_backends", None))


def apply():
    """Add the flags above to XLA_FLAGS where they apply; returns (scheduler flag in effect, number
    of CPU devices rlx asked for or 0)."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("RLX_KEEP_XLA_FLAGS") == "1":
        return FLAG in flags, 0
    scheduler = FLAG.split("=")[0] not in flags and needed()
    cores = usable_cores()
    devices = DEVICES not in flags and cores > 1
    add = [FLAG] * scheduler + [f"{DEVICES}={cores}"] * devices
    if not add:
        return FLAG in flags, 0
    if _started():
        warnings.warn(f"JAX started its backends before rlx was imported, so {' '.join(add)} is not in effect "
                      f"(see rlx/xla_guard.py: one CPU device per core lets multi-seed runs use every core; the "
                      f"scheduler flag avoids an XLA:CPU deadlock on jaxlib >= 0.10): import rlx first, or put "
                      f"the flags in XLA_FLAGS", RuntimeWarning, stacklevel=3)
        return FLAG in flags, 0
    os.environ["XLA_FLAGS"] = " ".join([flags] + add).strip()
    return FLAG in flags or scheduler, cores if devices else 0


IN_EFFECT, HOST_DEVICES = apply()
