"""Greedy/deterministic evaluation shared by the algorithms."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def evaluate_episodes(env, act, key, num_episodes: int = 16, max_steps: int | None = None):
    """Run `num_episodes` envs in parallel with `act(obs_batch, key) -> actions` until each
    has finished one episode (or `max_steps` steps) and return the mean first-episode return.
    An episode still running at `max_steps` counts with its partial return."""
    max_steps = int(max_steps or env.max_episode_steps or 1000)
    k_reset, k_run = jax.random.split(key)
    obs, state = jax.vmap(env.reset)(jax.random.split(k_reset, num_episodes))

    def body(carry, key):
        obs, state, ret, finished = carry
        k_act, k_step = jax.random.split(key)
        action = act(obs, k_act)
        obs, state, reward, term, trunc, _ = jax.vmap(env.step)(jax.random.split(k_step, num_episodes), state, action)
        ret = ret + reward * (1.0 - finished)
        finished = jnp.maximum(finished, (term | trunc).astype(jnp.float32))
        return (obs, state, ret, finished), None

    zeros = jnp.zeros((num_episodes,), jnp.float32)
    (_, _, ret, _), _ = jax.lax.scan(body, (obs, state, zeros, zeros), jax.random.split(k_run, max_steps))
    return ret.mean()
