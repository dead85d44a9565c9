"""Action and observation spaces: plain descriptions an algorithm can query before compiling."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Discrete:
    """Integer actions 0..n-1."""

    n: int
    shape: Tuple[int, ...] = ()
    dtype: str = "int32"

    def sample(self, key):
        return jax.random.randint(key, self.shape, 0, self.n, dtype=jnp.int32)


@dataclass(frozen=True)
class MultiDiscrete:
    """One integer action per dimension i in 0..nvec[i]-1 (e.g. one choice per machine)."""

    nvec: Tuple[int, ...]
    dtype: str = "int32"

    @property
    def shape(self):
        return (len(self.nvec),)

    def sample(self, key):
        keys = jax.random.split(key, len(self.nvec))
        return jnp.stack([jax.random.randint(k, (), 0, n, dtype=jnp.int32) for k, n in zip(keys, self.nvec)])


@dataclass(frozen=True, eq=False)
class Box:
    """Real-valued arrays with elementwise bounds (low/high: numbers or arrays of `shape`)."""

    low: object
    high: object
    shape: Tuple[int, ...]
    dtype: str = "float32"

    def low_array(self) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.low, np.float32), self.shape).copy()

    def high_array(self) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.high, np.float32), self.shape).copy()

    def sample(self, key):
        lo, hi = self.low_array(), self.high_array()
        lo = np.where(np.isfinite(lo), lo, -1.0)
        hi = np.where(np.isfinite(hi), hi, 1.0)
        return jax.random.uniform(key, self.shape, minval=lo, maxval=hi)


def kind(space) -> str:
    """'discrete', 'multi_discrete' or 'continuous'."""
    if isinstance(space, Discrete):
        return "discrete"
    if isinstance(space, MultiDiscrete):
        return "multi_discrete"
    if isinstance(space, Box):
        return "continuous"
    raise TypeError(f"unknown space {space!r}")
