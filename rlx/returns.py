"""Return and advantage estimators over time-major rollouts ([T, ...] arrays).

Every function takes `terminated` and `truncated` separately:
- terminated_t: s_{t+1} is terminal; its value is 0 (no bootstrap);
- truncated_t: the episode was cut by a time limit; bootstrap from the value of the final
  observation, which the caller passes in `next_values` (computed on
  `info["final_observation"]`), and do not let the recursion cross into the next episode.

`next_values[t]` is always the value of the state reached after step t (the true next state,
before any auto-reset), so one convention covers terminations, truncations and rollout ends.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def _f32(*xs):
    return [jnp.asarray(x, jnp.float32) for x in xs]


def gae(rewards, values, next_values, terminated, truncated, gamma, lam, unroll: int = 16):
    """Generalised advantage estimation. Returns (advantages, value_targets).

    delta_t = r_t + gamma * (1 - term_t) * next_values_t - values_t
    A_t     = delta_t + gamma * lam * (1 - term_t) * (1 - trunc_t) * A_{t+1}
    """
    rewards, values, next_values, term, trunc = _f32(rewards, values, next_values, terminated, truncated)
    deltas = rewards + gamma * (1.0 - term) * next_values - values
    carry_mask = gamma * lam * (1.0 - term) * (1.0 - trunc)

    def body(acc, x):
        delta, mask = x
        acc = delta + mask * acc
        return acc, acc

    _, adv = jax.lax.scan(body, jnp.zeros_like(deltas[0]), (deltas, carry_mask), reverse=True, unroll=unroll)
    return adv, adv + values


def lambda_returns(rewards, next_values, terminated, truncated, gamma, lam, unroll: int = 16):
    """TD(lambda) returns; with next_values_t = max_a Q(s_{t+1}, a) these are Peng's Q(lambda)
    targets as used by PQN.

    G_t = r_t + gamma * (1 - term_t) * [(1 - lam) * next_values_t + lam * G_{t+1}]   inside an episode
    G_t = r_t + gamma * (1 - term_t) * next_values_t                                 at an episode end or t = T-1
    """
    rewards, next_values, term, trunc = _f32(rewards, next_values, terminated, truncated)
    end = jnp.maximum(term, trunc)
    end = end.at[-1].set(1.0)  # the rollout's last step bootstraps fully

    def body(g_next, x):
        r, v, t, e = x
        cont = (1.0 - e) * (lam * g_next + (1.0 - lam) * v) + e * v
        g = r + gamma * (1.0 - t) * cont
        return g, g

    _, g = jax.lax.scan(body, jnp.zeros_like(rewards[0]), (rewards, next_values, term, end), reverse=True, unroll=unroll)
    return g
