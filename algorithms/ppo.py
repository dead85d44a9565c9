"""PPO-Clip for discrete, multi-discrete and continuous actions, in one file.

Paper: Schulman et al., "Proximal Policy Optimization Algorithms", arXiv 1707.06347 (2017).
Reference implementation whose settings are the defaults: PureJaxRL (luchris429/purejaxrl)
`purejaxrl/ppo.py` (gymnax, CartPole) and `ppo_continuous_action.py` (brax).

    L_clip = -mean(min(r A, clip(r, 1-eps, 1+eps) A)),  r = pi(a|s) / pi_old(a|s)
    L_V    = 0.5 mean(max((V - R)^2, (V_old + clip(V - V_old, +-eps) - R)^2))
    L      = L_clip + vf_coef L_V - ent_coef H(pi)

One update = a rollout of `num_steps` from `num_envs` envs, GAE, then `update_epochs` passes
of `num_minibatches` shuffled minibatches (advantages normalised per minibatch).

Differences from PureJaxRL, on purpose:
- truncation (time limits) is not treated as termination: GAE bootstraps from the value of
  `info["final_observation"]` (`--no-bootstrap-truncation` restores PureJaxRL's rule);
- metrics are per-update scalars, not per env step.

Reproduce PureJaxRL's CartPole result (return ~500 after 5e5 steps):

    python algorithms/ppo.py --env CartPole-v1 --num-seeds 4

Brax (PureJaxRL's continuous settings are the preset for `brax/*`, with its positional backend and
brax's cached auto-reset: each env restarts from its first state; `--env-autoreset fresh` draws a new
initial state per episode instead):

    python algorithms/ppo.py --env brax/hopper --num-seeds 4 --total-timesteps 5e7
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
from rlx import normalize as nz
from rlx import returns
from rlx.config import check, field, static
from rlx.evaluate import evaluate_episodes
from rlx.networks import ACTIVATIONS, MLP, CategoricalHead, GaussianHead, MultiDiscreteHead, ValueHead
from rlx.train import Train, episode_metrics


@dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    total_timesteps: int = static(500_000, "env steps per seed", within="[1, inf)")
    num_envs: int = static(4, "parallel envs per seed", within="[1, inf)")
    num_steps: int = static(128, "rollout length per env and update", within="[1, inf)")
    update_epochs: int = static(4, "passes over each rollout", within="[1, inf)")
    num_minibatches: int = static(4, "minibatches per epoch", within="[1, inf)")
    lr: float = field(2.5e-4, "Adam learning rate", within="(0, inf)")
    anneal_lr: bool = static(True, "linear learning-rate decay to 0 over training")
    gamma: float = field(0.99, "discount", within="[0, 1]")
    gae_lambda: float = field(0.95, "GAE lambda", within="[0, 1]")
    clip_eps: float = field(0.2, "policy (and value) clip range", within="(0, inf)")
    ent_coef: float = field(0.01, "entropy bonus coefficient", within="[0, inf)")
    vf_coef: float = field(0.5, "value loss coefficient", within="[0, inf)")
    max_grad_norm: float = field(0.5, "global gradient-norm clip", within="(0, inf)")
    clip_value: bool = static(True, "clip the value loss like the policy loss")
    hidden: Tuple[int, ...] = static((64, 64), "hidden layer widths (actor and critic, separate)", within="[1, inf)")
    activation: str = static("tanh", "hidden activation", choices=ACTIVATIONS)
    normalize_obs: bool = static(False, "running observation normalisation")
    normalize_reward: bool = static(False, "scale rewards by the running std of the discounted return")
    bootstrap_truncation: bool = static(True, "bootstrap from the final observation at time limits")
    env_backend: str = static("auto", "brax physics backend (brax envs only; auto = spring)",
                              choices=envs.ENV_BACKEND_CHOICES)
    env_autoreset: str = static("auto", "brax auto-reset (brax envs only): fresh (auto; a new reset per episode) or "
                                "cached (each env's first state, as brax's AutoResetWrapper)", choices=envs.ENV_AUTORESET_CHOICES)

    def validate(self) -> None:
        batch = self.num_envs * self.num_steps
        check(batch % self.num_minibatches == 0,
              f"the batch num_envs x num_steps = {batch} does not split into --num-minibatches {self.num_minibatches}; "
              f"choose a divisor of {batch}")
        check(self.total_timesteps >= batch,
              f"--total-timesteps {self.total_timesteps} is less than one rollout (num_envs x num_steps = {batch})")
        envs.make_from_config(self)  # unknown env names fail here, with close matches


def preset(env: str) -> dict:
    """Per-env-family defaults (explicit flags override them)."""
    if env.startswith("brax/"):  # PureJaxRL ppo_continuous_action.py
        return dict(total_timesteps=50_000_000, num_envs=2048, num_steps=10, update_epochs=4, num_minibatches=32,
                    lr=3e-4, anneal_lr=False, ent_coef=0.0, hidden=(256, 256), normalize_obs=True,
                    normalize_reward=True, env_backend="positional", env_autoreset="cached")  # BraxGymnaxWrapper's
    if env in ("Pendulum-v1", "MountainCarContinuous-v0"):  # rlx choice: continuous settings at gymnax scale
        return dict(total_timesteps=1_000_000, num_envs=16, num_steps=128, update_epochs=10, num_minibatches=8,
                    lr=3e-4, anneal_lr=True, ent_coef=0.0, normalize_obs=True, normalize_reward=True)
    return {}


class ActorCritic(nn.Module):
    """Separate actor and critic MLPs (PureJaxRL); observations are flattened."""

    action_space: Any
    hidden: Tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, obs):
        x = obs.reshape(obs.shape[: obs.ndim - self.obs_ndim] + (-1,))
        trunk = lambda: MLP(self.hidden, self.activation, init="orthogonal", init_scale=float(np.sqrt(2)))
        space = self.action_space
        if isinstance(space, envs.spaces.Discrete):
            pi = CategoricalHead(space.n)(trunk()(x))
        elif isinstance(space, envs.spaces.MultiDiscrete):
            pi = MultiDiscreteHead(space.nvec)(trunk()(x))
        else:
            pi = GaussianHead(space.shape[0])(trunk()(x))
        return pi, ValueHead()(trunk()(x))

    obs_ndim: int = 1


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array  # raw observations [num_envs, ...]
    obs_stats: nz.RunningStats
    rew_scaler: nz.RewardScaler
    key: jax.Array


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array


def ppo_policy_loss(log_prob, old_log_prob, adv, clip_eps):
    """Clipped surrogate (to minimise). Variants (adaptive KL, DPO drift) replace this function."""
    ratio = jnp.exp(log_prob - old_log_prob)
    unclipped = ratio * adv
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * adv
    loss = -jnp.mean(jnp.minimum(unclipped, clipped))
    clip_frac = jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32))
    approx_kl = jnp.mean((ratio - 1.0) - (log_prob - old_log_prob))
    return loss, (clip_frac, approx_kl)


def value_loss(value, old_value, target, clip_eps, clip):
    if not clip:
        return 0.5 * jnp.mean((value - target) ** 2)
    v_clipped = old_value + jnp.clip(value - old_value, -clip_eps, clip_eps)
    return 0.5 * jnp.mean(jnp.maximum((value - target) ** 2, (v_clipped - target) ** 2))


def lr_schedule(config: Config, num_updates: int, steps_per_update: int):
    """Constant, or linear decay by update index: the lr of update k is lr * (1 - k / num_updates)
    (PureJaxRL), reaching 0 after the last optimiser step."""
    if not config.anneal_lr:
        return config.lr
    return lambda count: config.lr * (1.0 - (count // steps_per_update) / num_updates)


def make_train(config: Config) -> Train:
    env = envs.make_from_config(config)
    obs_shape = env.observation_space.shape
    net = ActorCritic(env.action_space, tuple(config.hidden), config.activation, obs_ndim=len(obs_shape))
    num_updates = config.total_timesteps // (config.num_envs * config.num_steps)
    batch = config.num_envs * config.num_steps
    mb_size = batch // config.num_minibatches
    steps_per_update = config.update_epochs * config.num_minibatches

    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm),
                     optax.adam(lr_schedule(config, num_updates, steps_per_update), eps=1e-5))

    def norm_obs(stats, obs):
        return nz.normalize(stats, obs) if config.normalize_obs else obs

    def init(key):
        k_net, k_env, key = jax.random.split(key, 3)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, config.num_envs))
        params = net.init(k_net, jnp.zeros((1,) + obs_shape))
        obs_stats = nz.stats_init(obs_shape)
        if config.normalize_obs:
            obs_stats = nz.stats_update(obs_stats, obs)
        return TrainState(params, tx.init(params), env_state, obs, obs_stats,
                          nz.reward_scaler_init(config.num_envs), key)

    def env_step(carry, _):
        ts = carry
        key, k_act, k_step = jax.random.split(ts.key, 3)
        obs_in = norm_obs(ts.obs_stats, ts.obs)
        pi, value = net.apply(ts.params, obs_in)
        action = pi.sample(seed=k_act)
        log_prob = pi.log_prob(action)  # of the raw sample; continuous actions are clipped in the env
        obs, env_state, reward, term, trunc, info = jax.vmap(env.step)(
            jax.random.split(k_step, config.num_envs), ts.env_state, action)
        obs_stats, rew_scaler = ts.obs_stats, ts.rew_scaler
        if config.normalize_obs:
            obs_stats = nz.stats_update(obs_stats, obs)
        if config.normalize_reward:
            rew_scaler, reward = nz.reward_scaler_update(rew_scaler, reward, term | trunc, config.gamma)
        final_obs = norm_obs(obs_stats, info["final_observation"])
        tr = Transition(obs_in, action, log_prob, value, reward, term, trunc, final_obs)
        ep = episode_metrics(info, term | trunc, keep_env_axes=True)
        return ts._replace(env_state=env_state, obs=obs, obs_stats=obs_stats, rew_scaler=rew_scaler, key=key), (tr, ep)

    def loss_fn(params, mb, adv, target):
        pi, value = net.apply(params, mb.obs)
        log_prob = pi.log_prob(mb.action)
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        pg_loss, (clip_frac, approx_kl) = ppo_policy_loss(log_prob, mb.log_prob, adv, config.clip_eps)
        v_loss = value_loss(value, mb.value, target, config.clip_eps, config.clip_value)
        entropy = pi.entropy().mean()
        total = pg_loss + config.vf_coef * v_loss - config.ent_coef * entropy
        return total, dict(loss=total, actor_loss=pg_loss, value_loss=v_loss, entropy=entropy,
                           clip_frac=clip_frac, approx_kl=approx_kl)

    def update(ts: TrainState):
        ts, (traj, ep) = jax.lax.scan(env_step, ts, None, config.num_steps)
        if config.bootstrap_truncation:
            _, next_values = net.apply(ts.params, traj.final_obs)
            terminated, truncated = traj.terminated, traj.truncated
        else:  # PureJaxRL: a time limit ends the episode like a termination
            _, last_value = net.apply(ts.params, norm_obs(ts.obs_stats, ts.obs))
            next_values = jnp.concatenate([traj.value[1:], last_value[None]])
            terminated, truncated = traj.terminated | traj.truncated, jnp.zeros_like(traj.truncated)
        adv, targets = returns.gae(traj.reward, traj.value, next_values, terminated, truncated,
                                   config.gamma, config.gae_lambda)

        flat = jax.tree.map(lambda x: x.reshape((batch,) + x.shape[2:]), (traj, adv, targets))

        def epoch(carry, _):
            params, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            perm = jax.random.permutation(k_perm, batch)
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, mb_size) + x.shape[1:]), flat)

            def minibatch(carry, mb):
                params, opt_state = carry
                tr, a, t = mb
                grads, info = jax.grad(loss_fn, has_aux=True)(params, tr, a, t)
                upd, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, upd), opt_state), info

            (params, opt_state), info = jax.lax.scan(minibatch, (params, opt_state), shuffled)
            return (params, opt_state, key), info

        key, k_epochs = jax.random.split(ts.key)
        (params, opt_state, _), info = jax.lax.scan(epoch, (ts.params, ts.opt_state, k_epochs), None,
                                                    config.update_epochs)
        metrics = {k: v.mean() for k, v in info.items()}
        metrics.update({k: v.sum() for k, v in ep.items()})
        return ts._replace(params=params, opt_state=opt_state, key=key), metrics

    def evaluate(ts: TrainState, key, num_episodes):
        def act(obs, _):
            pi, _ = net.apply(ts.params, norm_obs(ts.obs_stats, obs))
            return pi.mode()

        return evaluate_episodes(env, act, key, num_episodes)

    return Train(init=init, update=update, num_updates=num_updates,
                 env_steps_per_update=config.num_envs * config.num_steps, evaluate=evaluate,
                 env_name=config.env, requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="ppo", preset=preset)
