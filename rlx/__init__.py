"""rlx: single-file, jit-compiled, vmapped JAX reinforcement-learning algorithms.

The shared core: `networks`, `returns`, `normalize`, `buffers`, `config`, `train` (the
algorithm/runner contract), `evaluate`, `stats` and `run` (command line and runner). Import
submodules explicitly (`from rlx import returns`); `rlx.run` pulls in matplotlib lazily.
Importing `rlx.envs` (every algorithm does) or `rlx.run` sets one XLA:CPU flag (`rlx.xla_guard`).
"""
from . import xla_guard  # noqa: F401  (must run before anything starts JAX's backends)

__version__ = "0.1.0"
