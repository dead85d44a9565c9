"""Pure flax.linen building blocks shared by the algorithms.

Torso: `MLP` (widths, activation from `ACTIVATIONS`, optional LayerNorm, init scheme from
`INIT_SCHEMES`); each algorithm writes its own image torso (PQN's MinAtar CNN) and the stream-x
networks live in `rlx.stream`.
Heads return distrax distributions or arrays: `CategoricalHead`, `MultiDiscreteHead`,
`GaussianHead` (state-independent log-std), `TanhGaussianHead`, `ValueHead`, `QHead`.
`ResetGRU` is a GRU scanned over time whose carry is zeroed at episode starts.
"""
from __future__ import annotations

from typing import Callable, Sequence

import distrax
import flax.linen as nn
import jax.numpy as jnp
import numpy as np

ACTIVATIONS = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "leaky_relu": nn.leaky_relu,
    "elu": nn.elu,
    "gelu": nn.gelu,
    "silu": nn.silu,
}


def activation(name: str) -> Callable:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]


INIT_SCHEMES = ("orthogonal", "lecun", "xavier")


def kernel_init(scheme: str, scale: float = np.sqrt(2)):
    """'orthogonal' (with gain `scale`), 'lecun' (lecun normal) or 'xavier' (xavier uniform)."""
    if scheme == "orthogonal":
        return nn.initializers.orthogonal(scale)
    if scheme == "lecun":
        return nn.initializers.lecun_normal()
    if scheme == "xavier":
        return nn.initializers.xavier_uniform()
    raise ValueError(f"unknown init scheme {scheme!r}; choose one of {INIT_SCHEMES}")


class MLP(nn.Module):
    """Dense layers (zero bias) with activation; optional LayerNorm before each activation."""

    hidden: Sequence[int] = (64, 64)
    act: str = "tanh"
    layer_norm: bool = False
    init: str = "orthogonal"
    init_scale: float = float(np.sqrt(2))

    @nn.compact
    def __call__(self, x):
        f = activation(self.act)
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=kernel_init(self.init, self.init_scale), bias_init=nn.initializers.zeros)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = f(x)
        return x


class CategoricalHead(nn.Module):
    num_actions: int
    init_scale: float = 0.01

    @nn.compact
    def __call__(self, x):
        logits = nn.Dense(self.num_actions, kernel_init=nn.initializers.orthogonal(self.init_scale),
                          bias_init=nn.initializers.zeros)(x)
        return distrax.Categorical(logits=logits)


class MultiDiscreteHead(nn.Module):
    """One independent categorical per action dimension; dimensions with fewer choices than
    max(nvec) have their extra logits masked to -inf. Samples have shape [..., len(nvec)]."""

    nvec: Sequence[int]
    init_scale: float = 0.01

    @nn.compact
    def __call__(self, x):
        nvec = tuple(int(n) for n in self.nvec)
        d, k = len(nvec), max(nvec)
        logits = nn.Dense(d * k, kernel_init=nn.initializers.orthogonal(self.init_scale),
                          bias_init=nn.initializers.zeros)(x)
        logits = logits.reshape(x.shape[:-1] + (d, k))
        valid = np.arange(k)[None, :] < np.asarray(nvec)[:, None]
        logits = jnp.where(valid, logits, -1e9)
        return distrax.Independent(distrax.Categorical(logits=logits), reinterpreted_batch_ndims=1)


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent log-std parameter (PureJaxRL/CleanRL)."""

    action_dim: int
    init_scale: float = 0.01
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, x):
        mean = nn.Dense(self.action_dim, kernel_init=nn.initializers.orthogonal(self.init_scale),
                        bias_init=nn.initializers.zeros)(x)
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.action_dim,))
        return distrax.MultivariateNormalDiag(mean, jnp.exp(log_std) * jnp.ones_like(mean))


class TanhGaussianHead(nn.Module):
    """State-dependent Gaussian squashed by tanh (SAC), log-std clipped to [min, max]."""

    action_dim: int
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, x):
        mean = nn.Dense(self.action_dim)(x)
        log_std = nn.Dense(self.action_dim)(x)
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
        return distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))


class ValueHead(nn.Module):
    init_scale: float = 1.0

    @nn.compact
    def __call__(self, x):
        v = nn.Dense(1, kernel_init=nn.initializers.orthogonal(self.init_scale), bias_init=nn.initializers.zeros)(x)
        return v[..., 0]


class QHead(nn.Module):
    num_actions: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_actions)(x)


class ResetGRU(nn.Module):
    """GRU over a time-major sequence: inputs x [T, B, F] and `starts` [T, B] (True where
    x_t is the first observation of an episode). The carry is zeroed before the cell call at
    every start, so no information crosses episode boundaries. Returns (carry, outputs)."""

    hidden: int = 128

    @nn.compact
    def __call__(self, carry, x, starts):
        def step(cell, h, inp):
            xt, st = inp
            h = jnp.where(st[:, None], jnp.zeros_like(h), h)
            h, y = cell(h, xt)
            return h, y

        scan = nn.scan(step, variable_broadcast="params", split_rngs={"params": False}, in_axes=0, out_axes=0)
        return scan(nn.GRUCell(self.hidden), carry, (x, starts))

    def initial_carry(self, batch: int):
        return jnp.zeros((batch, self.hidden), jnp.float32)
