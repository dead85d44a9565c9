"""rlx: single-file, jit-compiled, vmapped JAX reinforcement-learning algorithms.

The shared core: `networks`, `returns`, `normalize`, `buffers`, `optim` (ObGD), `stream` (the
stream-x recipe), `config`, `train` (the algorithm/runner contract), `evaluate`, `stats`, and
the runner: `run` (`run()`, the Python API), `cli` (command line), `plan` (runs, seeds, chunks),
`programs` (compiling, the memory check), `rundir` (run directory, checkpoints, lock), `report`
(summaries, loggers, plots) and `devices` (sharding; `use_all_cpu_cores()`). Import submodules explicitly
(`from rlx import returns`). Importing any of them changes nothing in your process: no
environment variable, no XLA flag, no JAX device.
"""
__version__ = "0.1.0"
