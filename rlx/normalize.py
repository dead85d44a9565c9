"""Running statistics as pure functions over small pytrees.

`RunningStats` uses the parallel (Chan et al.) update, which for a batch of one is Welford's
update; `count` starts at `init_count` (1e-4 like PureJaxRL/gym, or 0 for exact Welford).
`RewardScaler` divides rewards by the running std of the discounted return (PPO's "reward
scaling"; stream-x's ScaleReward), resetting the return accumulator at episode ends.
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


# --------------------------------------------------------------------------------------------
# Stream-x flavoured normalisers (Elsayed et al. 2024, `normalization_wrappers.py`): exact
# Welford for one sample at a time with the count starting at 0 (first sample: mean = x,
# variance 0), the *unbiased* variance, reported as 1 while count < 2. The population variance
# is stored directly (var ← var + ((x−m)(x−m′) − var)/n) instead of M2 so that float32 leaves
# do not grow with the stream; the count is int32 (exact far beyond float32's 2^24).


class Welford(NamedTuple):
    mean: jnp.ndarray
    var: jnp.ndarray  # population variance (M2 / n)
    count: jnp.ndarray  # int32 number of samples


def welford_init(shape=()) -> Welford:
    return Welford(jnp.zeros(shape, jnp.float32), jnp.zeros(shape, jnp.float32), jnp.zeros((), jnp.int32))


def welford_update(w: Welford, x, mask=True) -> Welford:
    """Fold one sample `x` (shaped like the stats) in; where `mask` is False, return `w` unchanged
    (branch-free, so it vmaps)."""
    x = jnp.asarray(x, jnp.float32)
    n = w.count + 1
    nf = n.astype(jnp.float32)
    d = x - w.mean
    mean = w.mean + d / nf
    var = w.var + (d * (x - mean) - w.var) / nf
    mask = jnp.asarray(mask, bool)
    return Welford(jnp.where(mask, mean, w.mean), jnp.where(mask, var, w.var), jnp.where(mask, n, w.count))


def welford_var(w: Welford):
    """Unbiased variance M2/(n−1); 1 while fewer than 2 samples were seen."""
    nf = w.count.astype(jnp.float32)
    return jnp.where(w.count < 2, jnp.ones_like(w.var), w.var * nf / jnp.maximum(nf - 1.0, 1.0))


def welford_normalize(w: Welford, x, eps: float = 1e-8):
    return (x - w.mean) / jnp.sqrt(welford_var(w) + eps)


class StreamRewardScaler(NamedTuple):
    trace: jnp.ndarray  # u, the running discounted return (scalar per learner)
    stats: Welford  # Welford stats of u


def stream_reward_scaler_init() -> StreamRewardScaler:
    return StreamRewardScaler(jnp.zeros((), jnp.float32), welford_init(()))


def stream_reward_scale(scaler: StreamRewardScaler, reward, done, gamma):
    """Stream-x's ScaleReward for one learner: u ← γ·(1 − done)·u + r with `done` of the
    *current* step (so u = r_T at a terminal step), Welford stats on u, and the reward
    divided (not mean-subtracted) by √(var(u) + 1e-8). Returns (new scaler, scaled reward)."""
    u = gamma * (1.0 - jnp.asarray(done, jnp.float32)) * scaler.trace + reward
    stats = welford_update(scaler.stats, u)
    return StreamRewardScaler(u, stats), reward / jnp.sqrt(welford_var(stats) + 1e-8)


def stream_observe(stats: Welford, final_obs, next_obs, done, eps: float = 1e-8):
    """Stream-x's NormalizeObservation on an auto-resetting env step. The official wrapper
    updates the stats with every observation it emits, reset observations included, and then
    normalises it with the updated stats: first the observation reached by the step
    (`final_obs`, what the learner bootstraps from), then, if the episode ended, the first
    observation of the next episode. Returns (stats, normalised s′, normalised next obs), where
    next obs = normalised reset obs when `done`, else s′."""
    stats = welford_update(stats, final_obs)
    s_prime = welford_normalize(stats, final_obs, eps)
    stats = welford_update(stats, next_obs, mask=done)
    s_reset = welford_normalize(stats, next_obs, eps)
    return stats, s_prime, jnp.where(jnp.asarray(done, bool), s_reset, s_prime)
