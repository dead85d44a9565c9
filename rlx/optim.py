"""Optimisers that optax lacks, as optax-style transformations.

ObGD — overshooting-bounded gradient descent with eligibility traces (Elsayed, Vasan,
Mahmood 2024, "Streaming Deep Reinforcement Learning Finally Works", arXiv 2410.14606).
One ObGD instance per network. Per transition it receives the gradient g of the network's
surrogate (∇v(s), ∇Q(s,a), or ∇[log π(a|s) + β·sign(δ)·H]), a scalar TD error δ computed
once before any parameter changes, and a reset flag:

    z      ← γλ·z + g
    δ̄      ← max(|δ|, 1)
    M      ← α·κ·δ̄·‖z‖₁           (one global L1 norm over every tensor of this network)
    α_eff  ← α / max(M, 1)
    Δθ     =  α_eff·δ·z            (the "+" form: θ ← θ + Δθ, i.e. optax.apply_updates)
    z      ← z·(1 − reset)        (after the update: the step itself used the full trace)

so ‖Δθ‖₁ ≤ 1/κ on every step. Everything is arithmetic (no Python or lax branches on data),
so a learner vmaps: `reset` is a 0/1 (or bool) array, δ a scalar array, and α, γ, λ, κ may be
traced (swept) values.

    opt = obgd(lr=1.0, gamma=0.99, trace_lambda=0.8, kappa=2.0)
    state = opt.init(params)
    updates, state = opt.update(grads, state, params, delta=delta, reset=done)
    params = optax.apply_updates(params, updates)

`reset_before` (optional extra argument, default 0) zeroes the trace *before* accumulating
(z ← γλ·z·(1 − reset_before) + g): the paper's pseudocode timing for Watkins Q(λ), kept as
an ablation (stream_q's `--reset-before`).
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


def tree_l1(tree) -> jax.Array:
    """Global L1 norm: sum of |x| over every leaf of the pytree."""
    return sum(jnp.sum(jnp.abs(x)) for x in jax.tree_util.tree_leaves(tree))


def obgd_step_size(lr, kappa, delta, z_l1):
    """α_eff = α / max(α·κ·max(|δ|,1)·‖z‖₁, 1) and the bound's M."""
    delta_bar = jnp.maximum(jnp.abs(delta), 1.0)
    m = lr * kappa * delta_bar * z_l1
    return lr / jnp.maximum(m, 1.0), m


class ObGDState(NamedTuple):
    trace: Any  # eligibility trace z, shaped like the params
    step_size: jax.Array  # α_eff of the last update (diagnostic)
    bound: jax.Array  # M of the last update (diagnostic; the bound is active where M > 1)


def obgd(lr=1.0, gamma=0.99, trace_lambda=0.8, kappa=2.0) -> optax.GradientTransformationExtraArgs:
    """ObGD as an optax transformation; `update(grads, state, params=None, *, delta, reset,
    reset_before=0)` returns the parameter increment α_eff·δ·z (to add) and the new state."""

    def init(params):
        zero = jnp.zeros((), jnp.float32)
        return ObGDState(jax.tree_util.tree_map(jnp.zeros_like, params), zero, zero)

    def update(grads, state, params=None, *, delta, reset, reset_before=0.0, **unused):
        del params, unused
        keep_before = 1.0 - jnp.asarray(reset_before, jnp.float32)
        z = jax.tree_util.tree_map(lambda e, g: gamma * trace_lambda * keep_before * e + g, state.trace, grads)
        step, m = obgd_step_size(lr, kappa, delta, tree_l1(z))
        updates = jax.tree_util.tree_map(lambda e: (step * delta) * e, z)
        keep = 1.0 - jnp.asarray(reset, jnp.float32)
        z = jax.tree_util.tree_map(lambda e: e * keep, z)
        return updates, ObGDState(z, jnp.asarray(step, jnp.float32), jnp.asarray(m, jnp.float32))

    return optax.GradientTransformationExtraArgs(init, update)

