"""Devices: the CPU device split, the XLA:CPU scheduler guard, sharding the runs axis, donation, and
how much memory the devices have.

Importing this module changes nothing. `use_all_cpu_cores()` is the one explicit call that sets the
two XLA options below; the command line (`rlx.cli.main`) makes it before JAX starts its backends,
and a library user who wants the same in their own program calls it first thing:

    import rlx.devices
    rlx.devices.use_all_cpu_cores()   # before the first jax.devices() / array / jit call

1. One CPU device per core. XLA:CPU runs a program on one device, and a vmapped multi-seed program
   leaves cores idle (PureJaxRL's PPO at 16 seeds used 1.5 of 2 cores).
   `--xla_force_host_platform_device_count=<usable cores>` gives JAX one CPU device per core, and the
   runner shards the seed/sweep axis over them, so seeds train in parallel on every core.
   Measured on a 2-core CPU (jax 0.9.2), 16 seeds vmapped: PPO CartPole 1e5 steps 16.5-18.2 s on one
   device vs 8.4-8.8 s on two; PQN CartPole 5e4 steps 30.7-36.6 s vs 23.0-24.9 s. Single-seed
   programs run on one device as before. GPU/TPU runs are unaffected: their devices are the default.
2. XLA's CPU runtime in jaxlib 0.10.2 deadlocked vmapped multi-seed training programs on a 2-core
   CPU (every thread parked on a futex, `block_until_ready` never returning); with
   `--xla_cpu_enable_concurrency_optimized_scheduler=false` the same programs finished every time
   (benchmarks/results/xla_cpu_hang.md). The flag costs speed, so it is applied only for jaxlib >= 0.10.

A flag you name in XLA_FLAGS yourself wins; RLX_KEEP_XLA_FLAGS=1 keeps XLA's defaults for both.
"""
from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import sys
import warnings
from typing import NamedTuple, Optional

import numpy as np

SCHEDULER_FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"
DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
DONATE_MIN_BYTES = 256 * 2**20  # on CPU, donate chunk states larger than this


class XlaOptions(NamedTuple):
    scheduler_guard: bool  # the scheduler flag is in XLA_FLAGS
    cpu_devices: int  # CPU devices use_all_cpu_cores asked for (0: none asked, XLA's default or yours)


def scheduler_guard_needed() -> bool:
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


def backends_started() -> bool:
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bridge is not None and bool(getattr(bridge, "_backends", None))


def use_all_cpu_cores() -> XlaOptions:
    """Ask XLA for one CPU device per usable core and, on jaxlib >= 0.10, turn off the XLA:CPU
    scheduler that deadlocked; both by adding to XLA_FLAGS, so call it before JAX starts its backends
    (importing jax is fine). Flags already in XLA_FLAGS are kept; RLX_KEEP_XLA_FLAGS=1 changes nothing.
    Warns and changes nothing if the backends already started. Calling it again is harmless."""
    flags = os.environ.get("XLA_FLAGS", "")
    if os.environ.get("RLX_KEEP_XLA_FLAGS") == "1":
        return XlaOptions(SCHEDULER_FLAG in flags, 0)
    scheduler = SCHEDULER_FLAG.split("=")[0] not in flags and scheduler_guard_needed()
    cores = usable_cores()
    split = DEVICE_COUNT_FLAG not in flags and cores > 1
    add = [SCHEDULER_FLAG] * scheduler + [f"{DEVICE_COUNT_FLAG}={cores}"] * split
    if not add:
        return XlaOptions(SCHEDULER_FLAG in flags, 0)
    if backends_started():
        warnings.warn(f"JAX started its backends before rlx.devices.use_all_cpu_cores() was called, so "
                      f"{' '.join(add)} is not in effect (one CPU device per core lets multi-seed runs use every "
                      f"core; the scheduler flag avoids an XLA:CPU deadlock on jaxlib >= 0.10): call it before "
                      f"the first JAX computation, or put the flags in XLA_FLAGS", RuntimeWarning, stacklevel=2)
        return XlaOptions(SCHEDULER_FLAG in flags, 0)
    os.environ["XLA_FLAGS"] = " ".join([flags] + add).strip()
    return XlaOptions(SCHEDULER_FLAG in flags or scheduler, cores if split else 0)


# --------------------------------------------------------------------------------------------
# the runs axis on devices


def runs_sharding(devices):
    """The leading (runs) axis split over `devices`."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    return NamedSharding(Mesh(np.asarray(devices), ("runs",)), P("runs"))


def replicated(sharding):
    from jax.sharding import NamedSharding, PartitionSpec as P

    return NamedSharding(sharding.mesh, P())


def shard_runs(x):
    """Place `x` (leading axis = runs, e.g. the PRNG keys of `jax.jit(jax.vmap(train))`) with that axis split
    over as many local devices as divide it evenly, for your own vmapped programs: on a CPU, after
    `use_all_cpu_cores()`, the runs then train on every core. (`rlx.run.run` pads the runs instead.)
    Returns (placed x, number of devices used)."""
    import jax

    n = max(k for k in range(1, min(jax.local_device_count(), x.shape[0]) + 1) if x.shape[0] % k == 0)
    if n == 1:
        return x, 1
    return jax.device_put(x, runs_sharding(jax.local_devices()[:n])), n


def donate_argnums(state, devices) -> tuple:
    """Donating the state to each chunk saves a copy of it (replay buffers can be GBs), but made PPO's
    1-seed CartPole chunks ~30% slower on XLA:CPU (benchmarks/results/ppo_cartpole.md): donate off CPU,
    or on CPU once the state is big enough for the copy to matter."""
    import jax

    nbytes = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state))
    return (0,) if devices[0].platform != "cpu" or nbytes > DONATE_MIN_BYTES else ()


def device_name() -> str:
    import jax

    d = jax.devices()
    if d[0].platform != "cpu":
        return f"{len(d)}x {d[0].platform} ({d[0].device_kind})"
    name = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{len(d)}x cpu ({name}, {os.cpu_count()} cores)"


# --------------------------------------------------------------------------------------------
# memory


def parse_bytes(text: str) -> int:
    """'8G', '512M', '1.5GiB', '1000000' -> bytes (binary units)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}.get(t[-1:], 1)
    return int(float(t[:-1] if mult > 1 else t) * mult)


def available_memory(device) -> int:
    """Bytes free for this run: the device's free memory on a GPU/TPU, MemAvailable on a CPU; at most
    RLX_MEMORY_LIMIT (e.g. "8G") when that is set."""
    avail = None
    if device.platform != "cpu":
        stats = device.memory_stats() or {}
        if "bytes_limit" in stats:
            avail = int(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    if avail is None:
        try:
            with open("/proc/meminfo") as f:
                info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f}
            avail = info.get("MemAvailable", info["MemFree"])
        except (OSError, KeyError, ValueError, IndexError):
            avail = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    limit = os.environ.get("RLX_MEMORY_LIMIT")
    return min(avail, parse_bytes(limit)) if limit else avail


def program_bytes(compiled) -> Optional[dict]:
    """What XLA allocates for one call of a compiled program (None where the backend does not say)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend implements it
        return None
    if m is None:
        return None
    get = lambda k: int(getattr(m, k, 0) or 0)  # noqa: E731
    return {"argument": get("argument_size_in_bytes"), "output": get("output_size_in_bytes"),
            "alias": get("alias_size_in_bytes"), "temp": get("temp_size_in_bytes"),
            "code": get("generated_code_size_in_bytes")}
