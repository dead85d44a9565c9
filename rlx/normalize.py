"""Running statistics as pure functions over small pytrees.

`RunningStats` uses the parallel (Chan et al.) update, which for a batch of one is Welford's
update; `count` starts at `init_count` (1e-4 like PureJaxRL/gym, or 0 for exact Welford).
`RewardScaler` divides rewards by the running std of the discounted return (PPO's "reward
scaling"), resetting the return accumulator at episode ends. Stream-x's one-sample-at-a-time
normalisers live in `rlx.stream`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import jax.numpy as jnp


class RunningStats(NamedTuple):
    mean: jnp.ndarray
    var: jnp.ndarray
    count: jnp.ndarray


def stats_init(shape=(), init_count: float = 1e-4) -> RunningStats:
    return RunningStats(jnp.zeros(shape, jnp.float32), jnp.ones(shape, jnp.float32), jnp.asarray(init_count, jnp.float32))


def stats_update(stats: RunningStats, batch, axis=0) -> RunningStats:
    """Fold a batch (reduced over `axis`, int or tuple) into the running stats."""
    batch = jnp.asarray(batch, jnp.float32)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    n = float(math.prod(batch.shape[a] for a in axes))
    b_mean = batch.mean(axis=axes)
    b_var = batch.var(axis=axes)
    delta = b_mean - stats.mean
    tot = stats.count + n
    mean = stats.mean + delta * n / tot
    m2 = stats.var * stats.count + b_var * n + delta**2 * stats.count * n / tot
    return RunningStats(mean, m2 / tot, tot)


def normalize(stats: RunningStats, x, clip: float | None = None, eps: float = 1e-8):
    y = (x - stats.mean) / jnp.sqrt(stats.var + eps)
    return y if clip is None else jnp.clip(y, -clip, clip)


class RewardScaler(NamedTuple):
    ret: jnp.ndarray  # running discounted return per env
    stats: RunningStats  # stats of `ret` (scalar)


def reward_scaler_init(num_envs: int, init_count: float = 1e-4) -> RewardScaler:
    return RewardScaler(jnp.zeros((num_envs,), jnp.float32), stats_init((), init_count))


def reward_scaler_update(scaler: RewardScaler, reward, done, gamma):
    """reward, done: [num_envs]. Returns (new scaler, scaled reward)."""
    ret = scaler.ret * gamma + reward
    stats = stats_update(scaler.stats, ret)
    scaled = reward / jnp.sqrt(stats.var + 1e-8)
    return RewardScaler(ret * (1.0 - jnp.asarray(done, jnp.float32)), stats), scaled
