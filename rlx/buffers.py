"""Functional buffers with fixed shapes (jit- and vmap-friendly).

Replay ring buffer:
    buf = replay_init(example_transition, capacity)      # storage [capacity, ...] per leaf
    buf = replay_add(buf, batch_of_transitions)          # leading axis = batch (e.g. num_envs)
    batch = replay_sample(buf, key, batch_size)          # uniform over the filled slots only
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class ReplayBuffer(NamedTuple):
    data: Any  # pytree, each leaf [capacity, ...]
    pos: jnp.ndarray  # next write index
    size: jnp.ndarray  # number of filled slots (<= capacity)


def replay_init(example, capacity: int) -> ReplayBuffer:
    data = jax.tree.map(lambda x: jnp.zeros((capacity,) + jnp.shape(x), jnp.asarray(x).dtype), example)
    return ReplayBuffer(data, jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def replay_capacity(buf: ReplayBuffer) -> int:
    return int(jax.tree.leaves(buf.data)[0].shape[0])


def replay_add(buf: ReplayBuffer, batch) -> ReplayBuffer:
    """Write a batch (leading axis B <= capacity) at the ring position, wrapping around."""
    cap = replay_capacity(buf)
    b = int(jax.tree.leaves(batch)[0].shape[0])
    if b > cap:
        raise ValueError(f"cannot add {b} items to a replay buffer of capacity {cap}")
    idx = (buf.pos + jnp.arange(b)) % cap
    data = jax.tree.map(lambda s, x: s.at[idx].set(x.astype(s.dtype)), buf.data, batch)
    return ReplayBuffer(data, (buf.pos + b) % cap, jnp.minimum(buf.size + b, cap))


def replay_sample(buf: ReplayBuffer, key, batch_size: int):
    """Uniform sample (with replacement) of `batch_size` filled slots. Sampling from an empty
    buffer returns slot 0 (callers warm the buffer up first)."""
    idx = jax.random.randint(key, (batch_size,), 0, jnp.maximum(buf.size, 1))
    return jax.tree.map(lambda s: s[idx], buf.data)
