"""brax environments behind the rlx env API, as `brax/<name>`.

Time limit: `episode_length` steps (default 1000), reported as `truncated` (not terminated),
so algorithms can bootstrap from `info["final_observation"]`, the observation reached before
the auto-reset. Unlike brax's own AutoResetWrapper, which restores one cached first state,
each new episode starts from a fresh `reset` with its own key. Actions are clipped to [-1, 1].
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import spaces
from .core import Env

BACKENDS = ("spring", "positional", "generalized", "mjx")


class BraxInner(NamedTuple):
    state: Any  # brax.envs.State of the current episode
    steps: jax.Array


class BraxEnv(Env):
    def __init__(self, name: str, backend: str = "spring", episode_length: int = 1000):
        import brax.envs

        if backend not in BACKENDS:
            raise ValueError(f"unknown brax backend {backend!r}; choose one of {BACKENDS}")
        self.name = f"brax/{name}"
        self._env = brax.envs.get_environment(name, backend=backend)
        self.max_episode_steps = int(episode_length)
        obs_dim = int(self._env.observation_size)
        act_dim = int(self._env.action_size)
        self.observation_space = spaces.Box(-np.inf, np.inf, (obs_dim,))
        self.action_space = spaces.Box(-1.0, 1.0, (act_dim,))

    def _reset(self, key):
        st = self._env.reset(key)
        return st.obs, BraxInner(st, jnp.zeros((), jnp.int32))

    def _step(self, key, inner, action):
        action = jnp.clip(action, -1.0, 1.0)
        st = self._env.step(inner.state, action)
        steps = inner.steps + 1
        terminated = st.done > 0.5
        truncated = (steps >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        fresh = self._env.reset(key)
        new_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), fresh, st)
        obs = jnp.where(done, fresh.obs, st.obs)
        return obs, BraxInner(new_state, jnp.where(done, 0, steps)), st.reward, terminated, truncated, st.obs, {}
