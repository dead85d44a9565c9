"""rlx: single-file, jit-compiled, vmapped JAX reinforcement-learning algorithms.

The shared core: `networks`, `returns`, `normalize`, `buffers`, `config`, `train` (the
algorithm/runner contract), `evaluate`, `stats` and `run` (command line and runner). Import
submodules explicitly (`from rlx import returns`); `rlx.run` pulls in matplotlib lazily.
"""
__version__ = "0.1.0"
