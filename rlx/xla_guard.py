"""Turn off XLA's concurrency-optimised CPU scheduler before JAX starts its backends.

XLA's CPU runtime in jaxlib 0.10.2 deadlocked vmapped multi-seed training programs on a 2-core
CPU: every thread parked on a futex, no CPU used, `block_until_ready` never returning. Seen with
rlx's own PPO (16 seeds, 2 of 6 runs) and, in every run, with PureJaxRL's PPO (4 seeds); with
`--xla_cpu_enable_concurrency_optimized_scheduler=false` the same programs finished every time
(benchmarks/results/xla_cpu_hang.md). The flag only changes XLA:CPU programs, and it costs
speed (that scheduler runs independent ops on both cores), so it is applied only for jaxlib
>= 0.10: on jaxlib 0.9.2, which Python 3.11 installs pin, none of these programs hung.

Applied on import by `rlx.envs` (every algorithm file imports it) and `rlx.run`, and by
`rlx/__init__` where that runs (an editable install makes `rlx` a namespace package, whose
`__init__` does not run, when it is imported from outside the repository). Keep XLA's
default with RLX_KEEP_XLA_FLAGS=1, or by naming the flag yourself in XLA_FLAGS.
"""
import importlib.metadata
import os
import sys
import warnings

FLAG = "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def needed() -> bool:
    """True for jaxlib >= 0.10 (the deadlock was seen on 0.10.2; later versions are unchecked)."""
    try:
        major, minor = (int(x) for x in importlib.metadata.version("jaxlib").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return True
    return (major, minor) >= (0, 10)


def apply() -> bool:
    """Add FLAG to XLA_FLAGS unless opted out or not needed; returns whether FLAG is now in effect."""
    flags = os.environ.get("XLA_FLAGS", "")
    name = FLAG.split("=")[0]
    if name in flags:
        return FLAG in flags
    if os.environ.get("RLX_KEEP_XLA_FLAGS") == "1" or not needed():
        return False
    bridge = sys.modules.get("jax._src.xla_bridge")
    if bridge is not None and getattr(bridge, "_backends", None):
        warnings.warn(f"JAX started its backends before rlx was imported, so {FLAG} (it avoids an XLA:CPU "
                      f"deadlock in multi-seed programs) is not in effect: import rlx first, or put it in XLA_FLAGS",
                      RuntimeWarning, stacklevel=2)
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True


IN_EFFECT = apply()
