"""Stream TD(λ): predicting a fixed policy's value from one transition at a time with ObGD.

Paper: Elsayed, Vasan, Mahmood, "Streaming Deep Reinforcement Learning Finally Works"
(arXiv 2410.14606, 2024); reference code mohmdelsayed/streaming-drl (`stream_td.py`, commit
407dca7). Per step: δ = r̃ + γ·(1 − d)·v(s′) − v(s) with current params (r̃ the scaled reward),
ObGD (κ = 2) on ∇v(s), trace reset after the update when d. Observations are Welford-normalised
(reset observations included), rewards scaled by the running std of the discounted return, a
time feature (−0.5 + steps/T) appended on flat observations. Network 2×128 (as the reference's
7 → 128 → 128 → 1), sparse init, LayerNorm without parameters, LeakyReLU.

rlx's task differs from the paper's experiment (ETTm2 oil-temperature prediction, a dataset
rlx does not ship): the learner predicts the value of a *fixed uniform-random policy* on any rlx
env. Quality is measured against Monte-Carlo returns, online and exactly: for every finished
episode, Σₜ (v̂ₜ − Gₜ)² with v̂ₜ = v(sₜ)·σₜ (the prediction made at sₜ, before that step's
update, in raw reward units: σₜ is the reward scale used at that step) and Gₜ the discounted
return of raw rewards to the end of the episode. The update reports per finished episode
`value_sq_error_sum`, `value_error_count` (its steps), `mc_return_sum` and `mc_return_sq_sum`,
so MSE = Σ sq_error / Σ count and the fraction of variance unexplained is
MSE / (mean(G²) − mean(G)²), over any window of updates (the runner's metrics.csv holds
per-chunk means of each, whose ratios are the same ratios).

Truncation rule: d = terminated OR truncated cuts the bootstrap and the trace, as the official
code does (`--no-bootstrap-truncation`, the default here, unlike stream_q/stream_ac): the
Monte-Carlo target also stops at the episode end, so target and TD fixed point agree (the time
feature tells the learner how much time is left).

Reproduce:
    python algorithms/stream_td.py --env Pendulum-v1 --num-seeds 4 --total-timesteps 68000
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import rlx.envs as envs
from rlx.config import check, field, static
from rlx.stream import (StreamRewardScaler, Welford, learner_input_init, learner_input_step, reward_scale,
                        stream_dense, stream_reward_scale, stream_reward_scaler_init, stream_torso)
from rlx.optim import ObGDState, obgd
from rlx.train import Train, episode_metrics


@dataclass(frozen=True)
class Config:
    env: str = "Pendulum-v1"
    total_timesteps: int = static(68_000, "env steps per learner (one update per step)", within="[1, inf)")
    lr: float = field(1.0, "ObGD step size α", within="(0, inf)")
    gamma: float = field(0.99, "discount γ", within="[0, 1]")
    trace_lambda: float = field(0.8, "eligibility-trace decay λ", within="[0, 1]")
    kappa: float = field(2.0, "ObGD bound κ", within="(0, inf)")
    hidden: Tuple[int, ...] = static((128, 128), "hidden layer widths (MinAtar: the conv torso's dense layer has "
                                                 "hidden[-1] units)", within="[1, inf)")
    sparsity: float = static(0.9, "fraction of each unit's inputs zeroed at init", within="[0, 1)")
    time_feature: bool = static(True, "append the time-in-episode feature (flat observations only)")
    bootstrap_truncation: bool = static(False, "bootstrap through time-limit truncation from the final observation "
                                        "(false: cut the bootstrap at every episode end, the official code's rule)")
    overshooting_info: bool = static(False, "also report `overshoot`: the TD error recomputed after the update changed sign")
    env_backend: str = static("auto", "brax physics backend (brax envs only; auto = spring)",
                              choices=envs.ENV_BACKEND_CHOICES)
    env_autoreset: str = static("auto", "brax auto-reset (brax envs only): fresh (auto; a new reset per episode) or "
                                "cached (each env's first state, as brax's AutoResetWrapper)", choices=envs.ENV_AUTORESET_CHOICES)

    def validate(self) -> None:
        env = envs.make_from_config(self)
        rank = len(env.observation_space.shape)
        check(rank in (1, 3), f"stream TD takes flat or [H, W, C] observations; {self.env} has shape {env.observation_space.shape}")
        check(not (self.time_feature and rank != 1), f"--time-feature needs flat observations; {self.env} has "
              f"shape {env.observation_space.shape}: pass --no-time-feature")


def preset(env: str) -> dict:
    if env.endswith("-MinAtar"):
        return {"time_feature": False}
    return {}


class ValueNetwork(nn.Module):
    hidden: Tuple[int, ...] = (128, 128)
    conv: bool = False
    sparsity: float = 0.9

    @nn.compact
    def __call__(self, x):
        x = stream_torso(self.hidden, self.conv, self.sparsity)(x)
        return stream_dense(1, self.sparsity)(x)[..., 0]


# ---------------------------------------------------------------------------------------------
# exact online squared error of predictions v_t against Monte-Carlo returns G_t of one episode:
#   Σ_t (v_t − G_t)² = Σ v_t² − 2 Σ_k r_k P_k + Σ_t G_t²,  P_k = γP_{k−1} + v_k,
#   Σ_t G_t² = Σ_k r_k² A_k + 2 Σ_k r_k γ C_{k−1},  A_k = γ²A_{k−1} + 1,  C_k = γC_{k−1} + r_k A_k,
#   Σ_t G_t = Σ_k r_k D_k,  D_k = γD_{k−1} + 1.


class MCError(NamedTuple):
    p: jax.Array
    a: jax.Array
    c: jax.Array
    d: jax.Array
    sum_vv: jax.Array
    sum_rp: jax.Array
    sum_gg: jax.Array
    sum_g: jax.Array
    n: jax.Array


def mc_error_init() -> MCError:
    return MCError(*([jnp.zeros((), jnp.float32)] * 9))


def mc_error_update(acc: MCError, v, r, done, gamma):
    """Fold step k (prediction v_k at s_k, reward r_k) in; at an episode end return its
    (sq_error_sum, count, return_sum, return_sq_sum) and restart, else zeros."""
    p = gamma * acc.p + v
    a = gamma * gamma * acc.a + 1.0
    d = gamma * acc.d + 1.0
    sum_gg = acc.sum_gg + r * r * a + 2.0 * r * gamma * acc.c
    c = gamma * acc.c + r * a
    new = MCError(p, a, c, d, acc.sum_vv + v * v, acc.sum_rp + r * p, sum_gg, acc.sum_g + r * d, acc.n + 1.0)
    done_f = jnp.asarray(done, jnp.float32)
    out = (done_f * (new.sum_vv - 2.0 * new.sum_rp + new.sum_gg), done_f * new.n, done_f * new.sum_g, done_f * new.sum_gg)
    new = jax.tree_util.tree_map(lambda x: x * (1.0 - done_f), new)
    return new, out


class State(NamedTuple):
    params: Any
    opt: ObGDState
    obs_stats: Welford
    reward_scaler: StreamRewardScaler
    mc: MCError
    env_state: Any
    obs: jax.Array
    episode_steps: jax.Array
    key: jax.Array


def make_train(config: Config) -> Train:
    env = envs.make_from_config(config)
    conv = len(env.observation_space.shape) == 3
    horizon = float(max(env.max_episode_steps, 1))
    network = ValueNetwork(tuple(config.hidden), conv, config.sparsity)
    opt = obgd(config.lr, config.gamma, config.trace_lambda, config.kappa)

    def policy(key):  # the fixed policy whose value is learned: uniform random
        return env.action_space.sample(key)

    def init(key):
        k_net, k_env, key = jax.random.split(key, 3)
        obs, env_state = env.reset(k_env)
        stats, s = learner_input_init(obs, horizon, config.time_feature)
        params = network.init(k_net, s)
        return State(params, opt.init(params), stats, stream_reward_scaler_init(), mc_error_init(), env_state, s,
                     jnp.zeros((), jnp.int32), key)

    def update(state: State):
        key, k_act, k_env = jax.random.split(state.key, 3)
        next_obs, env_state, reward, terminated, truncated, info = env.step(k_env, state.env_state, policy(k_act))
        done = terminated | truncated
        scaler, r = stream_reward_scale(state.reward_scaler, reward, done, config.gamma)
        stats, s_prime, s_next, episode_steps = learner_input_step(
            state.obs_stats, state.episode_steps, info["final_observation"], next_obs, done, horizon, config.time_feature)

        # TD error with current params; ObGD on ∇v(s); trace reset after the update when d
        v_s, v_vjp = jax.vjp(lambda p: network.apply(p, state.obs), state.params)
        cut = terminated if config.bootstrap_truncation else done  # the trace resets on `done` either way
        not_done = 1.0 - cut.astype(jnp.float32)
        delta = r + config.gamma * not_done * network.apply(state.params, s_prime) - v_s
        (grads,) = v_vjp(jnp.ones_like(v_s))
        updates, opt_state = opt.update(grads, state.opt, delta=delta, reset=done)
        params = optax.apply_updates(state.params, updates)

        # prediction quality against Monte-Carlo returns, in raw reward units
        mc, (sq_err, count, g_sum, g_sq_sum) = mc_error_update(state.mc, v_s * reward_scale(scaler), reward, done, config.gamma)

        metrics = episode_metrics(info, done)
        metrics.update({
            "td_error_abs": jnp.abs(delta),
            "step_size": opt_state.step_size,
            "value_sq_error_sum": sq_err,
            "value_error_count": count,
            "mc_return_sum": g_sum,
            "mc_return_sq_sum": g_sq_sum,
        })
        if config.overshooting_info:
            delta_after = r + config.gamma * not_done * network.apply(params, s_prime) - network.apply(params, state.obs)
            metrics["overshoot"] = (delta * delta_after < 0).astype(jnp.float32)
        new_state = State(params, opt_state, stats, scaler, mc, env_state, s_next, episode_steps, key)
        return new_state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    return Train(init=init, update=update, num_updates=int(config.total_timesteps), env_steps_per_update=1,
                 env_name=config.env, requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="stream_td", preset=preset)
