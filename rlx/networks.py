"""Pure flax.linen building blocks shared by the algorithms.

Torsos: `MLP` (width/depth, activation, optional LayerNorm, init scheme) and `MinAtarCNN`.
Heads return distrax distributions or arrays: `CategoricalHead`, `MultiDiscreteHead`,
`GaussianHead` (state-independent log-std), `TanhGaussianHead`, `ValueHead`, `QHead`.
`ResetGRU` is a GRU scanned over time whose carry is zeroed at episode starts.
"""
from __future__ import annotations

from typing import Callable, Sequence

import distrax
import flax.linen as nn
import jax
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


def kernel_init(scheme: str, scale: float = np.sqrt(2)):
    """'orthogonal' (with gain `scale`), 'lecun' (lecun normal), 'xavier', or 'sparse'."""
    if scheme == "orthogonal":
        return nn.initializers.orthogonal(scale)
    if scheme == "lecun":
        return nn.initializers.lecun_normal()
    if scheme == "xavier":
        return nn.initializers.xavier_uniform()
    if scheme == "sparse":
        return sparse_init(0.9)
    raise ValueError(f"unknown init scheme {scheme!r}; choose orthogonal, lecun, xavier or sparse")


class MLP(nn.Module):
    """Dense layers with activation; optional LayerNorm before each activation
    (`layer_norm_params=False` gives LayerNorm without learnable scale/bias, as in stream-x)."""

    hidden: Sequence[int] = (64, 64)
    act: str = "tanh"
    layer_norm: bool = False
    layer_norm_params: bool = True
    init: str = "orthogonal"
    init_scale: float = float(np.sqrt(2))

    @nn.compact
    def __call__(self, x):
        f = activation(self.act)
        for width in self.hidden:
            x = nn.Dense(width, kernel_init=kernel_init(self.init, self.init_scale), bias_init=nn.initializers.zeros)(x)
            if self.layer_norm:
                x = nn.LayerNorm(use_scale=self.layer_norm_params, use_bias=self.layer_norm_params)(x)
            x = f(x)
        return x


class MinAtarCNN(nn.Module):
    """The MinAtar torso used by PQN/PureJaxRL: Conv(16, 3x3) -> flatten -> Dense(hidden),
    with optional LayerNorm after each layer. Input [..., H, W, C]."""

    features: int = 16
    hidden: int = 128
    act: str = "relu"
    layer_norm: bool = True
    init: str = "lecun"

    @nn.compact
    def __call__(self, x):
        f = activation(self.act)
        batch_shape = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        x = nn.Conv(self.features, (3, 3), strides=1, padding="VALID", kernel_init=kernel_init(self.init))(x)
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        x = f(x)
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.hidden, kernel_init=kernel_init(self.init))(x)
        if self.layer_norm:
            x = nn.LayerNorm()(x)
        x = f(x)
        return x.reshape(batch_shape + (self.hidden,))


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


# --------------------------------------------------------------------------------------------
# Stream-x networks (Elsayed et al. 2024): every Linear/Conv sparse-initialised (exactly
# ceil(0.9·fan_in) zero inputs per output unit, biases 0), each hidden layer
# Linear/Conv → LayerNorm without parameters → LeakyReLU(0.01), no norm after the output layer.


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


def stream_dense(features: int, sparsity: float = 0.9, name=None) -> nn.Dense:
    """An output layer as stream-x initialises it (sparse kernel, zero bias)."""
    return nn.Dense(features, kernel_init=sparse_init(sparsity), bias_init=nn.initializers.zeros, name=name)
