"""The stream-x recipe (Elsayed, Vasan, Mahmood 2024, "Streaming Deep Reinforcement Learning
Finally Works", arXiv 2410.14606; reference code mohmdelsayed/streaming-drl, commit 407dca7),
shared by algorithms/stream_td.py, stream_q.py and stream_ac.py. The optimiser (ObGD) is in
`rlx.optim`.

The learner input, per env step (one learner, no batch axis):

    stats, s = learner_input_init(obs, horizon, time_feature)              # at reset
    ...
    scaler, r = stream_reward_scale(scaler, reward, done, gamma)           # scaled reward r̃
    stats, s_prime, s_next, episode_steps = learner_input_step(
        stats, episode_steps, info["final_observation"], next_obs, done, horizon, time_feature)

- observations: exact Welford normalisation, updated with every observation the env emits,
  reset observations included (`stream_observe`, the reference NormalizeObservation);
- rewards: divided by the running std of the discounted return (`stream_reward_scale`, the
  reference ScaleReward);
- time feature (flat observations): −0.5 + steps/T appended after normalisation (`time_feature`,
  the reference AddTimeInfo, quirk included);
- networks: sparse init (`sparse_init`: exactly ceil(0.9·fan_in) zero inputs per output unit,
  biases 0), each hidden layer Linear/Conv → LayerNorm without parameters
  (`exact_layer_norm`) → LeakyReLU(0.01), no norm after the output layer (`stream_dense`):
  `StreamMLP` for flat observations, `StreamMinAtarCNN` for [H, W, C] ones (`stream_torso`
  picks one).

The normalisers count from 0 (first sample: mean = x, variance reported as 1 while fewer than 2
samples were seen) and use the *unbiased* variance, as the reference does. The population
variance is stored directly (var ← var + ((x−m)(x−m′) − var)/n) instead of M2 so that float32
leaves do not grow with the stream; the count is int32 (exact far beyond float32's 2^24).
"""
from __future__ import annotations

from typing import NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------------------------
# running statistics


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


# --------------------------------------------------------------------------------------------
# reward scaling


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


def reward_scale(scaler: StreamRewardScaler):
    """The factor a scaled reward was divided by: √(var(u) + 1e-8) (1 before two samples)."""
    return jnp.sqrt(welford_var(scaler.stats) + 1e-8)


# --------------------------------------------------------------------------------------------
# observation normalisation, time feature and the learner input


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


def time_feature(steps, horizon):
    """The reference AddTimeInfo value after `steps` steps of an episode: −0.5 at reset and after
    the first step (its quirk), then rising by 1/horizon per step."""
    return -0.5 + jnp.maximum(steps - 1, 0).astype(jnp.float32) / horizon


def learner_input(norm_obs, steps, horizon, use_time_feature: bool):
    """The learner's input: the normalised observation, with `time_feature(steps, horizon)`
    appended when `use_time_feature` (a Python bool; flat observations only)."""
    if not use_time_feature:
        return norm_obs
    return jnp.concatenate([norm_obs, time_feature(steps, horizon)[None]])


def learner_input_init(obs, horizon, use_time_feature: bool):
    """At reset: the observation stats seeded with the first observation, and the learner's first
    input s₀. Returns (stats, s₀)."""
    stats = welford_update(welford_init(obs.shape), obs)
    return stats, learner_input(welford_normalize(stats, obs), jnp.zeros((), jnp.int32), horizon, use_time_feature)


def learner_input_step(stats: Welford, episode_steps, final_obs, next_obs, done, horizon, use_time_feature: bool):
    """After one auto-resetting env step from a state `episode_steps` into its episode: the
    normalised inputs s′ (the observation reached, what the learner bootstraps from) and s (the
    next step's input: the reset observation when `done`, else s′). Returns
    (stats, s′, s, episode_steps of s)."""
    stats, s_prime, s_next = stream_observe(stats, final_obs, next_obs, done)
    s_prime = learner_input(s_prime, episode_steps + 1, horizon, use_time_feature)
    episode_steps = jnp.where(done, 0, episode_steps + 1)
    s_next = learner_input(s_next, episode_steps, horizon, use_time_feature)
    return stats, s_prime, s_next, episode_steps


# --------------------------------------------------------------------------------------------
# networks


def sparse_init(sparsity: float = 0.9):
    """LeCun-uniform kernel init with an exact fraction `sparsity` of each output unit's
    inputs set to zero (stream-x's SparseInit): for a kernel [fan_in, fan_out], every column
    gets exactly ceil(sparsity * fan_in) zeros at random rows."""

    def init(key, shape, dtype=jnp.float32):
        k_w, k_m = jax.random.split(key)
        fan_in = int(np.prod(shape[:-1]))
        fan_out = shape[-1]
        bound = 1.0 / np.sqrt(fan_in)
        w = jax.random.uniform(k_w, shape, dtype, -bound, bound).reshape(fan_in, fan_out)
        n_zero = int(np.ceil(sparsity * fan_in))
        ranks = jnp.argsort(jax.random.uniform(k_m, (fan_in, fan_out)), axis=0)
        mask = ranks >= n_zero  # exactly n_zero rows per column are < n_zero
        return (w * mask).reshape(shape)

    return init


def exact_layer_norm(x, num_feature_axes: int = 1, eps: float = 1e-5):
    """LayerNorm without learnable scale/bias over the last `num_feature_axes` axes (3 for a
    conv map [H, W, C]: statistics over the whole per-sample tensor), with the two-pass
    variance mean((x − mean)²) as in torch's F.layer_norm (flax's default uses E[x²] − E[x]²)."""
    axes = tuple(range(-num_feature_axes, 0))
    mean = jnp.mean(x, axis=axes, keepdims=True)
    centred = x - mean
    var = jnp.mean(centred * centred, axis=axes, keepdims=True)
    return centred * jax.lax.rsqrt(var + eps)


class StreamMLP(nn.Module):
    """Stream-x MLP torso: for each width, Dense(sparse init) → exact LayerNorm → LeakyReLU."""

    hidden: Sequence[int] = (32, 32)
    sparsity: float = 0.9

    @nn.compact
    def __call__(self, x):
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=sparse_init(self.sparsity), bias_init=nn.initializers.zeros)(x)
            x = nn.leaky_relu(exact_layer_norm(x), 0.01)
        return x


class StreamMinAtarCNN(nn.Module):
    """Stream-x MinAtar torso: Conv(16, 3×3, stride 1, VALID) → LayerNorm over (H, W, C) →
    LeakyReLU → flatten → Dense(128) → LayerNorm → LeakyReLU; sparse init. Input [..., H, W, C]."""

    features: int = 16
    hidden: int = 128
    sparsity: float = 0.9

    @nn.compact
    def __call__(self, x):
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        x = nn.Conv(self.features, (3, 3), strides=1, padding="VALID", kernel_init=sparse_init(self.sparsity),
                    bias_init=nn.initializers.zeros)(x)
        x = nn.leaky_relu(exact_layer_norm(x, 3), 0.01)
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.hidden, kernel_init=sparse_init(self.sparsity), bias_init=nn.initializers.zeros)(x)
        x = nn.leaky_relu(exact_layer_norm(x), 0.01)
        return x.reshape(batch_shape + (self.hidden,))


def stream_torso(hidden: Sequence[int], conv: bool, sparsity: float = 0.9) -> nn.Module:
    """The reference torsos: for [H, W, C] observations `StreamMinAtarCNN` (Conv(16) → one dense
    layer of hidden[-1] units), else a `StreamMLP` with one layer per width in `hidden`."""
    if conv:
        return StreamMinAtarCNN(hidden=hidden[-1], sparsity=sparsity)
    return StreamMLP(tuple(hidden), sparsity=sparsity)


def stream_dense(features: int, sparsity: float = 0.9, name=None) -> nn.Dense:
    """An output layer as stream-x initialises it (sparse kernel, zero bias)."""
    return nn.Dense(features, kernel_init=sparse_init(sparsity), bias_init=nn.initializers.zeros, name=name)
