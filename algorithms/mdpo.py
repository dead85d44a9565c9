"""MDPO (on-policy): Mirror Descent Policy Optimization.

Tomar, Shani, Efroni, Ghavamzadeh, "Mirror Descent Policy Optimization", ICLR 2022
(arXiv 2005.09814); reference code manantomar/Mirror-Descent-Policy-Optimization, `mdpo_on/`.

Each iteration k collects a rollout with the current policy pi_k, freezes it, and takes
`sgd_steps` (m) full-batch Adam steps on

    L_k(theta) = E[ pi_theta(a|s) / pi_k(a|s) * A_k(s, a) ] - (1 / t_k) * E_s[ KL(pi_theta(.|s) || pi_k(.|s)) ]

(maximised). The KL is the mirror-descent Bregman term, in the direction KL(new || old), the
reverse of PPO-KL's, and analytic (diagonal Gaussian or categorical). The step size t_k is
annealed linearly, t_k = max(1 - k / K, t_min), so the KL weight 1/t_k grows from 1; K
(`tk_horizon`) defaults to this run's number of iterations (the reference hard-codes 10M steps).
A separate value network is trained after the policy steps (clipped value loss, shuffled
minibatch epochs, targets from GAE with truncation bootstrapping). Observations and rewards are
normalised as by stable-baselines' VecNormalize. No entropy bonus.

Defaults are the reference MuJoCo setting (1 env x 2048 steps, m = 10, Adam 3e-4, 2x64 tanh);
`preset` gives a setting for gymnax classic control (CartPole reaches ~500 in 5e5 steps).

Reference setting on brax hopper (paper: MuJoCo Hopper-v2, 1M steps, 5 seeds):
    python algorithms/mdpo.py --env brax/hopper --total-timesteps 1000000 --num-seeds 5 --out runs/mdpo_hopper
CartPole:
    python algorithms/mdpo.py --env CartPole-v1 --total-timesteps 500000 --num-seeds 4 --out runs/mdpo_cartpole
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import rlx.envs as envs
from rlx import networks, normalize, returns
from rlx.config import ConfigError, check, field, static
from rlx.evaluate import evaluate_episodes
from rlx.networks import ACTIVATIONS
from rlx.train import Train, episode_metrics


@dataclass(frozen=True)
class Config:
    env: str = field("brax/hopper", "environment id (gymnax id, brax/<name> or an rlx env)")
    total_timesteps: int = static(1_000_000, "env steps per seed", within="[1, inf)")
    num_envs: int = static(1, "parallel environments", within="[1, inf)")
    num_steps: int = static(2048, "rollout length per environment per iteration", within="[1, inf)")
    sgd_steps: int = static(10, "m: full-batch policy Adam steps per iteration (README: 10)", within="[1, inf)")
    lr: float = field(3e-4, "policy Adam learning rate (constant)", within="(0, inf)")
    adam_eps: float = field(1e-5, "Adam epsilon (policy and value)", within="(0, inf)")
    max_grad_norm: float = field(0.5, "global gradient-norm clip (policy and value)", within="(0, inf)")
    gamma: float = field(0.99, "discount", within="[0, 1]")
    gae_lambda: float = field(0.95, "GAE lambda", within="[0, 1]")
    tk_horizon: int = field(0, "K: t_k = max(1 - k/K, t_min) over iterations k = 0, 1, ...; 0 = this run's iterations",
                            within="[0, inf)")
    tk_min: float = field(0.0, "floor on t_k so the KL weight 1/t_k stays finite; 0 = 1/K", within="[0, 1]")
    critic_lr: float = field(3e-4, "value Adam learning rate (the reference uses the policy lr)", within="(0, inf)")
    vf_epochs: int = static(5, "value epochs per iteration, after the policy steps", within="[1, inf)")
    vf_minibatch_size: int = static(128, "value minibatch size (shuffled)", within="[1, inf)")
    vf_clip: float = field(0.2, "clip of the value change in the clipped value loss", within="(0, inf)")
    normalize_obs: bool = static(True, "normalise observations with running mean/std (VecNormalize)")
    normalize_reward: bool = static(True, "scale rewards by the running std of the discounted return (VecNormalize)")
    obs_clip: float = field(10.0, "clip of normalised observations", within="(0, inf)")
    reward_clip: float = field(10.0, "clip of scaled rewards", within="(0, inf)")
    hidden: Tuple[int, ...] = static((64, 64), "hidden layer widths (policy and value, separate networks)",
                                     within="[1, inf)")
    activation: str = static("tanh", "hidden activation", choices=ACTIVATIONS)
    env_backend: str = static("auto", "brax physics backend (brax envs only; auto = spring)",
                              choices=envs.ENV_BACKEND_CHOICES)
    env_autoreset: str = static("auto", "brax auto-reset (brax envs only): fresh (auto; a new reset per episode) or "
                                "cached (each env's first state, as brax's AutoResetWrapper)", choices=envs.ENV_AUTORESET_CHOICES)

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.batch_size

    def validate(self) -> None:
        try:
            env = envs.make_from_config(self)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        check(env.action_kind in ("discrete", "continuous", "multi_discrete"),
              f"MDPO needs discrete, multi-discrete or continuous actions; {self.env} has {env.action_kind}")
        check(self.num_updates >= 1,
              f"--total-timesteps {self.total_timesteps} is less than one iteration "
              f"(num_envs x num_steps = {self.batch_size}); raise it or shrink the rollout")
        check(self.batch_size % self.vf_minibatch_size == 0,
              f"--vf-minibatch-size {self.vf_minibatch_size} must divide num_envs x num_steps = {self.batch_size}")


def preset(env: str) -> dict:
    """Per-family overrides; explicit flags win."""
    if env.startswith("brax/"):
        return {}  # the reference MuJoCo setting is the default
    if env in ("CartPole-v1", "Acrobot-v1", "MountainCar-v0"):
        return {"num_envs": 4, "num_steps": 128, "total_timesteps": 500_000}
    if env.endswith("-MinAtar"):
        return {"num_envs": 64, "num_steps": 128, "total_timesteps": 10_000_000, "hidden": (256, 256)}
    return {"num_envs": 4, "num_steps": 512}


# ----------------------------------------------------------------------------- networks
class Actor(nn.Module):
    """stable-baselines MlpPolicy actor: tanh MLP + categorical / Gaussian (state-independent log-std)."""

    action_kind: str
    action_shape: Any  # n (discrete), nvec (multi-discrete) or action dim (continuous)
    hidden: tuple = (64, 64)
    act: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        x = networks.MLP(self.hidden, self.act)(obs)
        if self.action_kind == "discrete":
            return networks.CategoricalHead(self.action_shape)(x)
        if self.action_kind == "multi_discrete":
            return networks.MultiDiscreteHead(self.action_shape)(x)
        return networks.GaussianHead(self.action_shape)(x)


class Critic(nn.Module):
    hidden: tuple = (64, 64)
    act: str = "tanh"

    @nn.compact
    def __call__(self, obs):
        return networks.ValueHead()(networks.MLP(self.hidden, self.act)(obs))


# ----------------------------------------------------------------------------- losses
def tk_schedule(k, horizon, t_min):
    """Mirror-descent step size t_k = max(1 - k / K, t_min) for iteration k = 0, 1, ...
    (t_0 = 1; the reference's `1 - (iter - 1) / n_updates` with iter from 1)."""
    return jnp.maximum(1.0 - jnp.asarray(k, jnp.float32) / horizon, t_min)


def policy_loss(params, params_k, apply_pi, obs, actions, adv, t_k):
    """-L_k: -mean(ratio * A) + mean(KL(pi_theta || pi_k)) / t_k. `params_k` is the frozen
    sampling policy (no gradient flows into it)."""
    params_k = jax.lax.stop_gradient(params_k)
    pi, pi_k = apply_pi(params, obs), apply_pi(params_k, obs)
    ratio = jnp.exp(pi.log_prob(actions) - pi_k.log_prob(actions))
    pg = -jnp.mean(ratio * adv)
    kl = jnp.mean(pi.kl_divergence(pi_k))  # KL(new || old): new first
    return pg + kl / t_k, {"pg_loss": pg, "kl": kl, "ratio_dev": jnp.mean(jnp.abs(ratio - 1.0)),
                           "entropy": jnp.mean(pi.entropy())}


def policy_steps(params, opt_state, tx, apply_pi, obs, actions, adv, t_k, m: int):
    """m full-batch optimiser steps on `policy_loss`, anchored at the incoming params (= pi_k)."""
    params_k = params
    grad_fn = jax.value_and_grad(policy_loss, has_aux=True)

    def step(carry, _):
        p, o = carry
        (loss, aux), g = grad_fn(p, params_k, apply_pi, obs, actions, adv, t_k)
        upd, o = tx.update(g, o, p)
        return (optax.apply_updates(p, upd), o), (loss, aux)

    (params, opt_state), (loss, aux) = jax.lax.scan(step, (params, opt_state), None, m)
    return params, opt_state, jax.tree.map(lambda x: x[-1], (loss, aux))


def value_loss(v, v_old, targets, clip):
    """PPO-style clipped value loss: 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, +-c) - R)^2))."""
    v_clipped = v_old + jnp.clip(v - v_old, -clip, clip)
    return 0.5 * jnp.mean(jnp.maximum((v - targets) ** 2, (v_clipped - targets) ** 2))


# ----------------------------------------------------------------------------- training
class TrainState(NamedTuple):
    params_pi: Any
    params_v: Any
    opt_pi: Any
    opt_v: Any
    obs_stats: normalize.RunningStats
    rew_scaler: normalize.RewardScaler
    env_state: Any
    obs: jax.Array  # raw observation of each env
    key: jax.Array
    iteration: jax.Array


class Transition(NamedTuple):
    obs: jax.Array  # normalised
    action: jax.Array
    reward: jax.Array  # scaled
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array  # normalised info["final_observation"]: the true next state


def make_train(config: Config) -> Train:
    env = envs.make_from_config(config)
    kind = env.action_kind
    if kind == "discrete":
        action_shape = env.action_space.n
    elif kind == "multi_discrete":
        action_shape = tuple(int(n) for n in env.action_space.nvec)
    else:
        action_shape = int(env.action_space.shape[0])
    obs_shape = tuple(env.observation_space.shape)
    N, T = config.num_envs, config.num_steps
    batch = N * T
    num_updates = config.num_updates
    horizon = jnp.where(jnp.asarray(config.tk_horizon) > 0, config.tk_horizon, num_updates).astype(jnp.float32)
    t_min = jnp.where(jnp.asarray(config.tk_min) > 0, config.tk_min, 1.0 / horizon)

    actor = Actor(kind, action_shape, tuple(config.hidden), config.activation)
    critic = Critic(tuple(config.hidden), config.activation)
    tx_pi = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.lr, eps=config.adam_eps))
    tx_v = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.critic_lr, eps=config.adam_eps))
    n_mb = batch // config.vf_minibatch_size

    def norm_obs(stats, obs):
        return normalize.normalize(stats, obs, config.obs_clip) if config.normalize_obs else obs

    def init(key):
        k_pi, k_v, k_env, key = jax.random.split(key, 4)
        dummy = jnp.zeros((1,) + obs_shape, jnp.float32)
        params_pi, params_v = actor.init(k_pi, dummy), critic.init(k_v, dummy)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, N))
        stats = normalize.stats_init(obs_shape)
        if config.normalize_obs:
            stats = normalize.stats_update(stats, obs)
        return TrainState(params_pi, params_v, tx_pi.init(params_pi), tx_v.init(params_v), stats,
                          normalize.reward_scaler_init(N), env_state, obs, key, jnp.zeros((), jnp.int32))

    def env_step(carry, key):
        params_pi, stats, scaler, env_state, obs = carry
        k_act, k_env = jax.random.split(key)
        obs_n = norm_obs(stats, obs)
        action = actor.apply(params_pi, obs_n).sample(seed=k_act)
        obs, env_state, reward, term, trunc, info = jax.vmap(env.step)(jax.random.split(k_env, N), env_state, action)
        done = term | trunc
        if config.normalize_obs:
            stats = normalize.stats_update(stats, obs)
        next_n = norm_obs(stats, info["final_observation"])
        if config.normalize_reward:
            scaler, reward = normalize.reward_scaler_update(scaler, reward, done, config.gamma)
            reward = jnp.clip(reward, -config.reward_clip, config.reward_clip)
        tr = Transition(obs_n, action, reward, term, trunc, next_n)
        return (params_pi, stats, scaler, env_state, obs), (tr, episode_metrics(info, done, keep_env_axes=True))

    def update(ts: TrainState):
        key, k_roll, k_vf = jax.random.split(ts.key, 3)
        carry = (ts.params_pi, ts.obs_stats, ts.rew_scaler, ts.env_state, ts.obs)
        (_, stats, scaler, env_state, obs), (traj, ep) = jax.lax.scan(env_step, carry, jax.random.split(k_roll, T))

        # advantages: GAE with next_values = V(true next state), bootstrapping on truncation
        values = critic.apply(ts.params_v, traj.obs)
        next_values = critic.apply(ts.params_v, traj.next_obs)
        adv, targets = returns.gae(traj.reward, values, next_values, traj.terminated, traj.truncated,
                                   config.gamma, config.gae_lambda)
        flat = lambda x: x.reshape((batch,) + x.shape[2:])
        obs_b, act_b, adv_b, tgt_b, v_old_b = map(flat, (traj.obs, traj.action, adv, targets, values))
        adv_b = (adv_b - adv_b.mean()) / (adv_b.std() + 1e-8)

        # policy: m full-batch steps on the mirror-descent objective
        t_k = tk_schedule(ts.iteration, horizon, t_min)
        params_pi, opt_pi, (pi_loss, aux) = policy_steps(ts.params_pi, ts.opt_pi, tx_pi, actor.apply,
                                                         obs_b, act_b, adv_b, t_k, config.sgd_steps)

        # value: epochs of shuffled minibatches on the clipped value loss
        def vf_loss(p, o, v_old, tgt):
            return value_loss(critic.apply(p, o), v_old, tgt, config.vf_clip)

        def vf_epoch(carry, key):
            def vf_mb(carry, idx):
                p, o = carry
                loss, g = jax.value_and_grad(vf_loss)(p, obs_b[idx], v_old_b[idx], tgt_b[idx])
                upd, o = tx_v.update(g, o, p)
                return (optax.apply_updates(p, upd), o), loss

            perm = jax.random.permutation(key, batch).reshape(n_mb, config.vf_minibatch_size)
            return jax.lax.scan(vf_mb, carry, perm)

        (params_v, opt_v), v_losses = jax.lax.scan(vf_epoch, (ts.params_v, ts.opt_v),
                                                   jax.random.split(k_vf, config.vf_epochs))

        ts = TrainState(params_pi, params_v, opt_pi, opt_v, stats, scaler, env_state, obs, key, ts.iteration + 1)
        metrics = {k: jnp.sum(v) for k, v in ep.items()}
        metrics.update({"policy_loss": pi_loss, "value_loss": jnp.mean(v_losses), "t_k": t_k, **aux})
        return ts, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)

    def evaluate(ts: TrainState, key, num_episodes):
        def act(obs, _):
            return actor.apply(ts.params_pi, norm_obs(ts.obs_stats, obs)).mode()

        return evaluate_episodes(env, act, key, num_episodes, env.max_episode_steps)

    return Train(init, update, num_updates, batch, evaluate,
                 env_name=config.env, requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="mdpo", preset=preset)
