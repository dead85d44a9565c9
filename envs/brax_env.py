"""brax environments behind the rlx env API, as `brax/<name>`.

Time limit: `episode_length` steps (default 1000), reported as `truncated` (not terminated),
so algorithms can bootstrap from `info["final_observation"]`, the observation reached before
the auto-reset. Actions are clipped to [-1, 1].

Auto-reset, `autoreset=`:
- "fresh" (default): each new episode starts from a fresh `reset` with its own key, i.e. from the
  env's initial-state distribution. Under `vmap` the reset is computed at every step for every env.
- "cached": each env restarts from the first state it drew, as brax's AutoResetWrapper does (and so
  PureJaxRL and brax's own trainers): cheaper, and it changes what is learnt. PPO on ant at 1e6
  steps (2 seeds, benchmarks/results/ppo_brax.md) returned -15 with fresh resets and -4.7 with
  cached ones, PureJaxRL's -4.7 and -6.0.

Importing brax makes mujoco print "Failed to import warp" / "Failed to import mujoco_warp" on
stdout when the optional `warp` package is absent (rlx never uses it); `_import_brax_envs` drops
exactly those lines, and brax's "not actively being maintained" UserWarning, and lets everything
else (other output, import errors) through.
"""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import spaces
from .core import Env

BACKENDS = ("spring", "positional", "generalized", "mjx")
AUTORESETS = ("fresh", "cached")


_DEPENDENCY_NOISE = ("Failed to import warp:", "Failed to import mujoco_warp:")


def _without_dependency_noise(text: str) -> str:
    """`text` less the lines that only say the optional warp package is absent."""
    return "".join(line for line in text.splitlines(keepends=True) if not line.startswith(_DEPENDENCY_NOISE))


def _import_brax_envs():
    """`import brax.envs` without mujoco's warp notices on stdout (see the module docstring); any
    other output is passed on, and an import error propagates."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stdout(captured):
            import brax.envs
    finally:
        sys.stdout.write(_without_dependency_noise(captured.getvalue()))
    return brax.envs


class BraxInner(NamedTuple):
    state: Any  # brax.envs.State of the current episode
    steps: jax.Array
    first: Any  # the env's first state (autoreset="cached"), else None


class BraxEnv(Env):
    def __init__(self, name: str, backend: str = "spring", episode_length: int = 1000, autoreset: str = "fresh"):
        if backend not in BACKENDS:
            raise ValueError(f"unknown brax backend {backend!r}; choose one of {BACKENDS}")
        if autoreset not in AUTORESETS:
            raise ValueError(f"unknown brax autoreset {autoreset!r}; choose one of {AUTORESETS}")
        self.autoreset = autoreset
        self.name = f"brax/{name}"
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Brax System, piplines and environments are not actively being maintained")
            self._env = _import_brax_envs().get_environment(name, backend=backend)
        self.max_episode_steps = int(episode_length)
        obs_dim = int(self._env.observation_size)
        act_dim = int(self._env.action_size)
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,))
        self.action_space = spaces.Box(-1.0, 1.0, (act_dim,))

    def _reset(self, key):
        st = self._env.reset(key)
        return st.obs, BraxInner(st, jnp.zeros((), jnp.int32), st if self.autoreset == "cached" else None)

    def _step(self, key, inner, action):
        action = jnp.clip(action, -1.0, 1.0)
        st = self._env.step(inner.state, action)
        steps = inner.steps + 1
        terminated = st.done > 0.5
        truncated = (steps >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        start = inner.first if self.autoreset == "cached" else self._env.reset(key)
        new_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), start, st)
        obs = jnp.where(done, start.obs, st.obs)
        inner = BraxInner(new_state, jnp.where(done, 0, steps), inner.first)
        return obs, inner, st.reward, terminated, truncated, st.obs, {}
