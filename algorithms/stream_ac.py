"""Stream AC(λ): actor-critic learning from one transition at a time with two ObGD optimisers.

Paper: Elsayed, Vasan, Mahmood, "Streaming Deep Reinforcement Learning Finally Works"
(arXiv 2410.14606, 2024); reference code mohmdelsayed/streaming-drl
(`stream_ac_continuous.py`, `stream_ac_discrete.py`, `stream_ac_discrete_minatar.py`, commit
407dca7). No replay, no batch, no target network; `--num-seeds N` runs N independent learners
(one env each) in one compiled program.

Per step (one `update`), for each learner:
  1. a ~ π(·|s): Normal(μ, softplus(pre-σ)) per action dimension (continuous; the env is
     stepped with the action clipped to its bounds, log π uses the unclipped sample) or
     Categorical(softmax(preferences)) (discrete);
  2. δ = r̃ + γ·(1 − terminated)·v(s′) − v(s), computed once with current params, r̃ the
     scaled reward (see the truncation rule below);
  3. critic: ObGD (κ = 2) on ∇v(s); actor: ObGD (κ = 3) on ∇[log π(a|s) + β·sign(δ)·H(π(·|s))],
     β = 0.01, sign(δ) a constant, so the entropy push δ·β·sign(δ)·∇H = β|δ|·∇H always raises the
     entropy. Both traces reset after the update when the episode ended.
Observations: Welford normalisation (reset observations included), reward scaling by the
running std of the discounted return, time feature (−0.5 + steps/T) appended on flat
observations. Networks (no shared layers): sparse init, LayerNorm without parameters,
LeakyReLU; continuous 2×128 (μ and pre-σ heads), classic-control discrete 2×32, MinAtar
Conv(16, 3×3) → 128 for each of actor and critic.

Truncation rule (rlx default, as in stream_q.py): bootstrap through time-limit truncation from
info["final_observation"] (δ cut only on `terminated`); traces and the reward trace restart at
every episode end. `--no-bootstrap-truncation` is the official code's rule (cut at
terminated OR truncated, with the time feature telling the agent how much time is left).

Reproduce (paper: Hopper-v4 ≈2173, Walker2d-v4 ≈4335 final return at 2M steps, MuJoCo;
brax's hopper/walker2d are not the same simulator, so numbers are not directly comparable):
    python algorithms/stream_ac.py --env brax/hopper --num-seeds 8 --total-timesteps 2000000
    python algorithms/stream_ac.py --env Pendulum-v1 --num-seeds 8 --total-timesteps 200000
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

import rlx.envs as envs
from rlx.config import check, field, static
from rlx.stream import (StreamRewardScaler, Welford, learner_input_init, learner_input_step, stream_dense,
                        stream_reward_scale, stream_reward_scaler_init, stream_torso)
from rlx.optim import ObGDState, obgd
from rlx.train import Train, episode_metrics


@dataclass(frozen=True)
class Config:
    env: str = "brax/hopper"
    total_timesteps: int = static(2_000_000, "env steps per learner (one update per step)", within="[1, inf)")
    lr: float = field(1.0, "ObGD step size α (actor and critic)", within="(0, inf)")
    gamma: float = field(0.99, "discount γ", within="[0, 1]")
    trace_lambda: float = field(0.8, "eligibility-trace decay λ", within="[0, 1]")
    kappa_value: float = field(2.0, "critic ObGD bound κ", within="(0, inf)")
    kappa_policy: float = field(3.0, "actor ObGD bound κ", within="(0, inf)")
    ent_coef: float = field(0.01, "β: entropy bonus, scaled by sign(δ)", within="[0, inf)")
    min_std: float = field(1e-6, "added to softplus(pre-σ) so log π stays finite in float32 (rlx choice; 0 = none)",
                           within="[0, inf)")
    hidden: Tuple[int, ...] = static((128, 128), "hidden layer widths of actor and critic (MinAtar: the conv torso's "
                                                 "dense layer has hidden[-1] units)", within="[1, inf)")
    sparsity: float = static(0.9, "fraction of each unit's inputs zeroed at init", within="[0, 1)")
    time_feature: bool = static(True, "append the time-in-episode feature (off for MinAtar)")
    bootstrap_truncation: bool = static(True, "bootstrap through time-limit truncation from the final observation "
                                        "(false: cut the bootstrap at every episode end, the official code's rule)")
    overshooting_info: bool = static(False, "also report `overshoot`: the TD error recomputed after the update changed sign")
    env_backend: str = static("auto", "brax physics backend (brax envs only; auto = spring)",
                              choices=envs.ENV_BACKEND_CHOICES)
    env_autoreset: str = static("auto", "brax auto-reset (brax envs only): fresh (auto; a new reset per episode) or "
                                "cached (each env's first state, as brax's AutoResetWrapper)", choices=envs.ENV_AUTORESET_CHOICES)

    def validate(self) -> None:
        env = envs.make_from_config(self)
        check(env.action_kind in ("discrete", "continuous"), f"stream AC handles discrete or continuous (Box) actions; "
              f"{self.env} has {env.action_kind} actions")
        rank = len(env.observation_space.shape)
        check(rank in (1, 3), f"stream AC takes flat or [H, W, C] observations; {self.env} has shape {env.observation_space.shape}")
        check(not (self.time_feature and rank != 1), f"--time-feature needs flat observations; {self.env} has "
              f"shape {env.observation_space.shape}: pass --no-time-feature")


def preset(env: str) -> dict:
    """Reference settings per env family (explicit flags win)."""
    if env.endswith("-MinAtar"):
        return {"hidden": (128,), "time_feature": False, "total_timesteps": 10_000_000}
    if env.startswith("brax/"):
        return {}
    try:
        kind = envs.make(env).action_kind
    except ValueError:  # unknown env: validate() reports it
        return {}
    if kind == "discrete":  # classic control, stream_ac_discrete.py: 2×32
        return {"hidden": (32, 32), "total_timesteps": 500_000}
    return {"total_timesteps": 500_000}  # continuous classic control (Pendulum): 2×128


# ---------------------------------------------------------------------------------------------
# networks (separate actor and critic)


class Critic(nn.Module):
    hidden: Tuple[int, ...]
    conv: bool = False
    sparsity: float = 0.9

    @nn.compact
    def __call__(self, x):
        return stream_dense(1, self.sparsity)(stream_torso(self.hidden, self.conv, self.sparsity)(x))[..., 0]


class GaussianActor(nn.Module):
    """Returns (μ, pre-σ); σ = softplus(pre-σ) (+ min_std)."""

    action_dim: int
    hidden: Tuple[int, ...]
    conv: bool = False
    sparsity: float = 0.9

    @nn.compact
    def __call__(self, x):
        x = stream_torso(self.hidden, self.conv, self.sparsity)(x)
        return stream_dense(self.action_dim, self.sparsity, name="mu")(x), stream_dense(self.action_dim, self.sparsity, name="pre_std")(x)


class CategoricalActor(nn.Module):
    """Returns action preferences (logits)."""

    num_actions: int
    hidden: Tuple[int, ...]
    conv: bool = False
    sparsity: float = 0.9

    @nn.compact
    def __call__(self, x):
        return stream_dense(self.num_actions, self.sparsity)(stream_torso(self.hidden, self.conv, self.sparsity)(x))


def gaussian_log_prob(mu, std, a):
    return jnp.sum(-0.5 * jnp.square((a - mu) / std) - jnp.log(std) - 0.5 * jnp.log(2.0 * jnp.pi))


def gaussian_entropy(std):
    return jnp.sum(0.5 + 0.5 * jnp.log(2.0 * jnp.pi) + jnp.log(std))


def categorical_log_prob(logits, a):
    return jax.nn.log_softmax(logits)[a]


def categorical_entropy(logits):
    logp = jax.nn.log_softmax(logits)
    return -jnp.sum(jnp.exp(logp) * logp)


def policy_sample(out, key, continuous: bool, min_std=0.0):
    """a ~ π(·|s) from the actor's outputs: (μ, pre-σ) for a Gaussian, logits for a categorical."""
    if continuous:
        mu, pre_std = out
        return mu + (jax.nn.softplus(pre_std) + min_std) * jax.random.normal(key, mu.shape)
    return jax.random.categorical(key, out).astype(jnp.int32)


def log_prob_and_entropy(out, action, continuous: bool, min_std=0.0):
    """log π(a|s) and H(π(·|s)), summed over action dimensions."""
    if continuous:
        mu, pre_std = out
        std = jax.nn.softplus(pre_std) + min_std
        return gaussian_log_prob(mu, std, action), gaussian_entropy(std)
    return categorical_log_prob(out, action), categorical_entropy(out)


def actor_surrogate(out, action, delta, ent_coef, continuous: bool, min_std=0.0):
    """log π(a|s) + β·sign(δ)·H(π(·|s)), sign(δ) a constant: the actor's trace accumulates its
    gradient, and the step δ·∇(...) = δ·∇log π + β|δ|·∇H always pushes the entropy up."""
    log_prob, entropy = log_prob_and_entropy(out, action, continuous, min_std)
    return log_prob + ent_coef * jax.lax.stop_gradient(jnp.sign(delta)) * entropy


class State(NamedTuple):
    actor_params: Any
    critic_params: Any
    actor_opt: ObGDState
    critic_opt: ObGDState
    obs_stats: Welford
    reward_scaler: StreamRewardScaler
    env_state: Any
    obs: jax.Array  # the learner's current input s (normalised, time feature appended)
    episode_steps: jax.Array
    key: jax.Array


def make_train(config: Config) -> Train:
    env = envs.make_from_config(config)
    continuous = env.action_kind == "continuous"
    conv = len(env.observation_space.shape) == 3
    horizon = float(max(env.max_episode_steps, 1))
    critic = Critic(tuple(config.hidden), conv, config.sparsity)
    if continuous:
        action_dim = int(np.prod(env.action_space.shape))
        actor = GaussianActor(action_dim, tuple(config.hidden), conv, config.sparsity)
    else:
        actor = CategoricalActor(env.action_space.n, tuple(config.hidden), conv, config.sparsity)
    critic_opt = obgd(config.lr, config.gamma, config.trace_lambda, config.kappa_value)
    actor_opt = obgd(config.lr, config.gamma, config.trace_lambda, config.kappa_policy)

    def init(key):
        k_actor, k_critic, k_env, key = jax.random.split(key, 4)
        obs, env_state = env.reset(k_env)
        stats, s = learner_input_init(obs, horizon, config.time_feature)
        actor_params = actor.init(k_actor, s)
        critic_params = critic.init(k_critic, s)
        return State(actor_params, critic_params, actor_opt.init(actor_params), critic_opt.init(critic_params), stats,
                     stream_reward_scaler_init(), env_state, s, jnp.zeros((), jnp.int32), key)

    def update(state: State):
        key, k_act, k_env = jax.random.split(state.key, 3)

        # 1. sample a ~ π(·|s); the actor's outputs and their VJP come from one forward pass
        out, actor_vjp = jax.vjp(lambda p: actor.apply(p, state.obs), state.actor_params)
        action = policy_sample(out, k_act, continuous, config.min_std)

        # 2. one env step (the env clips continuous actions); reward scaling, obs normalisation
        next_obs, env_state, reward, terminated, truncated, info = env.step(k_env, state.env_state, action)
        done = terminated | truncated
        scaler, r = stream_reward_scale(state.reward_scaler, reward, done, config.gamma)
        stats, s_prime, s_next, episode_steps = learner_input_step(
            state.obs_stats, state.episode_steps, info["final_observation"], next_obs, done, horizon, config.time_feature)

        # 3. one TD error with current params, shared by both optimisers
        cut = terminated if config.bootstrap_truncation else done  # the trace resets on `done` either way
        not_done = 1.0 - cut.astype(jnp.float32)
        v_s, critic_vjp = jax.vjp(lambda p: critic.apply(p, state.obs), state.critic_params)
        v_next = critic.apply(state.critic_params, s_prime)
        delta = r + config.gamma * not_done * v_next - v_s

        # 4. critic: ObGD on ∇v(s); actor: ObGD on ∇[log π(a|s) + β·sign(δ)·H]; both reset on d
        (critic_grads,) = critic_vjp(jnp.ones_like(v_s))
        surrogate_grad = jax.grad(actor_surrogate)(out, action, delta, config.ent_coef, continuous, config.min_std)
        (actor_grads,) = actor_vjp(surrogate_grad)
        critic_updates, critic_state = critic_opt.update(critic_grads, state.critic_opt, delta=delta, reset=done)
        actor_updates, actor_state = actor_opt.update(actor_grads, state.actor_opt, delta=delta, reset=done)
        critic_params = optax.apply_updates(state.critic_params, critic_updates)
        actor_params = optax.apply_updates(state.actor_params, actor_updates)

        _, entropy = log_prob_and_entropy(out, action, continuous, config.min_std)
        metrics = episode_metrics(info, done)
        metrics.update({
            "td_error_abs": jnp.abs(delta),
            "value": v_s,
            "entropy": entropy,
            "critic_step_size": critic_state.step_size,
            "actor_step_size": actor_state.step_size,
        })
        if config.overshooting_info:
            delta_after = r + config.gamma * not_done * critic.apply(critic_params, s_prime) - critic.apply(critic_params, state.obs)
            metrics["overshoot"] = (delta * delta_after < 0).astype(jnp.float32)
        new_state = State(actor_params, critic_params, actor_state, critic_state, stats, scaler, env_state, s_next,
                          episode_steps, key)
        return new_state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    return Train(init=init, update=update, num_updates=int(config.total_timesteps), env_steps_per_update=1,
                 env_name=config.env, requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="stream_ac", preset=preset)
