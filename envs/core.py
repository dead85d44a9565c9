"""The one environment API every rlx algorithm uses.

    env = envs.make("CartPole-v1")
    obs, state = env.reset(key)
    obs, state, reward, terminated, truncated, info = env.step(key, state, action)

`step` auto-resets: when an episode ends (terminated or truncated) the returned `obs` is the
first observation of the next episode, and `info["final_observation"]` holds the last
observation of the episode that ended (equal to `obs` when it did not end), so algorithms can
bootstrap from it on truncation. Every env also reports episode statistics in `info`:
`episode_return` and `episode_length` of the episode that ended at this step (valid where
`terminated | truncated`; 0 elsewhere). Rewards are float32, flags are bool.

Envs are single (unbatched): vectorise with `jax.vmap(env.reset)` / `jax.vmap(env.step)`.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from . import spaces


class EpisodeStats(NamedTuple):
    episode_return: jax.Array  # running return of the current episode
    episode_length: jax.Array  # steps taken in the current episode


class State(NamedTuple):
    inner: Any  # the wrapped env's own state
    stats: EpisodeStats


class Env:
    """Base class: subclasses implement `_reset(key) -> (obs, inner)` and
    `_step(key, inner, action) -> (obs, inner, reward, terminated, truncated, final_obs, info)`
    (already auto-reset), plus `observation_space` / `action_space`."""

    name: str = "env"
    observation_space: Any = None
    action_space: Any = None
    max_episode_steps: int = 0

    @property
    def action_kind(self) -> str:
        return spaces.kind(self.action_space)

    def reset(self, key):
        obs, inner = self._reset(key)
        zero = EpisodeStats(jnp.zeros((), jnp.float32), jnp.zeros((), jnp.int32))
        return obs, State(inner, zero)

    def step(self, key, state: State, action):
        obs, inner, reward, terminated, truncated, final_obs, info = self._step(key, state.inner, action)
        reward = jnp.asarray(reward, jnp.float32)
        terminated = jnp.asarray(terminated, bool)
        truncated = jnp.asarray(truncated, bool) & ~terminated
        done = terminated | truncated
        ep_ret = state.stats.episode_return + reward
        ep_len = state.stats.episode_length + 1
        info = dict(info)
        info["final_observation"] = final_obs
        info["episode_return"] = jnp.where(done, ep_ret, 0.0)
        info["episode_length"] = jnp.where(done, ep_len, 0)
        stats = EpisodeStats(jnp.where(done, 0.0, ep_ret), jnp.where(done, 0, ep_len))
        return obs, State(inner, stats), reward, terminated, truncated, info

    def __repr__(self):
        return f"{type(self).__name__}({self.name}, obs={self.observation_space}, act={self.action_space})"
