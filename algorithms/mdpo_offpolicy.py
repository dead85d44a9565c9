"""MDPO (off-policy, SAC-like) and SAC: Mirror Descent Policy Optimization.

Tomar, Shani, Efroni, Ghavamzadeh, "Mirror Descent Policy Optimization", ICLR 2022
(arXiv 2005.09814); reference code manantomar/Mirror-Descent-Policy-Optimization, `mdpo_off/`
(SAC-v1 of stable-baselines 2 with an extra frozen policy copy).

Actor loss with a reparameterised tanh-Gaussian action a_theta = tanh(mu + sigma * xi), KL weight
c = 1/t_k (constant), entropy temperature lam and the old policy theta_k:

    J(theta) = E_{s~D, xi}[ c * log pi_theta(a_theta|s) + (lam - c) * log pi_k(a_theta|s) - Q1(s, a_theta) ]
             = E[ c * (log pi_theta - log pi_k)(a_theta|s) + lam * log pi_k(a_theta|s) - Q1(s, a_theta) ]

i.e. a KL(pi_theta || pi_k) trust region plus an entropy-regularised value term. theta_k is a
copy of theta refreshed every `old_policy_every` (m) gradient steps. With c = lam the theta_k term
cancels and the loss is exactly SAC's actor loss lam * log pi_theta - Q1: `--sac` runs that.

Critics (SAC-v1): twin Q, a state-value V with Polyak target V_bar;
    Q target  r + gamma (1 - terminated) V_bar(s')        (time limits bootstrap)
    V target  min(Q1, Q2)(s, a~pi_theta) - lam log pi_theta(a|s)
one Adam step per env step on every loss, uniform replay, uniform random actions for the
first `learning_starts` steps. Actions live in [-1, 1] and are rescaled to the env's bounds.

`update()` = `steps_per_update` env steps, each followed by one gradient step (metrics are
averaged over them). The replay buffer is held per seed in device memory: the runner checks
what the compiled program needs against the available memory before it allocates anything, and
refuses a seed count that does not fit (naming the largest that does).

Reference setting (paper: MuJoCo, c = 1, lam = 0.2, m = 1000, 1M steps) on brax hopper:
    python algorithms/mdpo_offpolicy.py --env brax/hopper --total-timesteps 1000000 --num-seeds 5 --out runs/mdpo_off_hopper
SAC with the same networks and settings:
    python algorithms/mdpo_offpolicy.py --env brax/hopper --sac --total-timesteps 1000000 --num-seeds 5 --out runs/sac_hopper
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
from rlx import buffers, networks
from rlx.config import ConfigError, check, field, static
from rlx.evaluate import evaluate_episodes
from rlx.networks import ACTIVATIONS
from rlx.train import Train, episode_metrics


@dataclass(frozen=True)
class Config:
    env: str = field("brax/hopper", "environment id with continuous actions (brax/<name>, Pendulum-v1, ...)")
    total_timesteps: int = static(1_000_000, "env steps per seed", within="[1, inf)")
    num_envs: int = static(1, "parallel envs (one gradient step per vector step)", within="[1, inf)")
    steps_per_update: int = static(1000, "vector env steps (each followed by one gradient step) per update()",
                                   within="[1, inf)")
    sac: bool = static(False, "SAC: set the KL weight c to the entropy temperature lam (the old policy cancels)")
    kl_coef: float = field(1.0, "c = 1/t_k: weight of log pi_theta - log pi_k (constant)", within="[0, inf)")
    ent_coef: float = field(0.2, "lam: entropy temperature", within="[0, inf)")
    old_policy_every: int = field(1000, "m: gradient steps between copies of the policy into the old policy pi_k",
                                  within="[1, inf)")
    buffer_size: int = static(1_000_000, "replay capacity (transitions per seed)", within="[1, inf)")
    batch_size: int = static(256, "minibatch size", within="[1, inf)")
    learning_starts: int = static(10_000, "env steps with uniform random actions and no learning", within="[0, inf)")
    gamma: float = field(0.99, "discount", within="[0, 1]")
    tau: float = field(0.005, "Polyak rate of the target value network (every step)", within="(0, 1]")
    lr: float = field(3e-4, "Adam learning rate of the actor", within="(0, inf)")
    critic_lr: float = field(3e-4, "Adam learning rate of Q1, Q2 and V", within="(0, inf)")
    policy_reg: float = field(1e-3, "weight of mean(mu^2) + mean(log_std^2) in the actor loss", within="[0, inf)")
    explore_deterministic: bool = static(False, "act with tanh(mu) after warm-up (reference quirk; default samples)")
    hidden: Tuple[int, ...] = static((256, 256), "hidden widths of the actor, Q and V networks", within="[1, inf)")
    activation: str = static("relu", "hidden activation", choices=ACTIVATIONS)
    env_backend: str = static("auto", "brax physics backend (brax envs only; auto = spring)",
                              choices=envs.ENV_BACKEND_CHOICES)
    env_autoreset: str = static("auto", "brax auto-reset (brax envs only): fresh (auto; a new reset per episode) or "
                                "cached (each env's first state, as brax's AutoResetWrapper)", choices=envs.ENV_AUTORESET_CHOICES)

    @property
    def env_steps_per_update(self) -> int:
        return self.num_envs * self.steps_per_update

    @property
    def num_updates(self) -> int:
        return self.total_timesteps // self.env_steps_per_update

    @property
    def capacity(self) -> int:  # no point holding more than the run collects
        return int(min(self.buffer_size, max(self.num_updates, 1) * self.env_steps_per_update))

    def validate(self) -> None:
        try:
            env = envs.make_from_config(self)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        check(env.action_kind == "continuous",
              f"off-policy MDPO/SAC needs continuous actions; {self.env} has {env.action_kind} actions "
              f"(use algorithms/mdpo.py for discrete actions)")
        lo, hi = env.action_space.low_array(), env.action_space.high_array()
        check(bool(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))),
              f"{self.env} has unbounded actions; the tanh policy needs finite bounds")
        check(self.num_updates >= 1,
              f"--total-timesteps {self.total_timesteps} is less than one update "
              f"(num_envs x steps_per_update = {self.env_steps_per_update}); raise it or lower --steps-per-update")


def preset(env: str) -> dict:
    """Per-family overrides; explicit flags win."""
    if env in ("Pendulum-v1", "MountainCarContinuous-v0"):
        return {"total_timesteps": 20_000, "learning_starts": 1_000, "steps_per_update": 200}
    return {}


# ----------------------------------------------------------------------------- networks
class Actor(nn.Module):
    action_dim: int
    hidden: tuple = (256, 256)
    act: str = "relu"

    @nn.compact
    def __call__(self, obs):
        x = networks.MLP(self.hidden, self.act, init="xavier")(obs)
        return networks.TanhGaussianHead(self.action_dim, log_std_min=-20.0, log_std_max=2.0)(x)


class DoubleQ(nn.Module):
    hidden: tuple = (256, 256)
    act: str = "relu"

    @nn.compact
    def __call__(self, obs, action):
        x = jnp.concatenate([obs, action], -1)
        q1 = nn.Dense(1)(networks.MLP(self.hidden, self.act, init="xavier")(x))[..., 0]
        q2 = nn.Dense(1)(networks.MLP(self.hidden, self.act, init="xavier")(x))[..., 0]
        return q1, q2


class VNet(nn.Module):
    hidden: tuple = (256, 256)
    act: str = "relu"

    @nn.compact
    def __call__(self, obs):
        return nn.Dense(1)(networks.MLP(self.hidden, self.act, init="xavier")(obs))[..., 0]


# ----------------------------------------------------------------------------- losses
def tanh_gaussian_log_prob(mu, log_std, u):
    """log pi(tanh(u)) for the pre-tanh value u ~ N(mu, exp(log_std)), by change of variables:
    log N(u; mu, sigma) - sum log(1 - tanh(u)^2), the log-det in its stable form
    2 (log 2 - u - softplus(-2u)). Working with u avoids atanh of a saturated action."""
    z = (u - mu) * jnp.exp(-log_std)
    log_n = -0.5 * z**2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - u - jax.nn.softplus(-2.0 * u))
    return jnp.sum(log_n - log_det, axis=-1)


def policy_params(apply_pi, params, obs):
    """(mu, log_std) of the pre-tanh Gaussian (log_std already clipped by the head)."""
    base = apply_pi(params, obs).distribution
    return base.loc, jnp.log(base.scale_diag)


def sample_action(mu, log_std, noise):
    """Reparameterised pre-tanh sample u and action tanh(u)."""
    u = mu + jnp.exp(log_std) * noise
    return u, jnp.tanh(u)


def mdpo_actor_loss(params, params_old, apply_pi, q1_fn, obs, noise, c, lam, reg=1e-3):
    """mean(c log pi_theta(a) + (lam - c) log pi_k(a) - Q1(s, a)) + reg (mean mu^2 + mean log_std^2),
    a = tanh(mu_theta + sigma_theta * noise); gradients flow through a into log pi_k but not into theta_k."""
    mu, log_std = policy_params(apply_pi, params, obs)
    mu_k, log_std_k = policy_params(apply_pi, jax.lax.stop_gradient(params_old), obs)
    u, a = sample_action(mu, log_std, noise)
    logp, logp_k = tanh_gaussian_log_prob(mu, log_std, u), tanh_gaussian_log_prob(mu_k, log_std_k, u)
    q1 = q1_fn(obs, a)
    loss = jnp.mean(c * logp + (lam - c) * logp_k - q1) + reg * (jnp.mean(mu**2) + jnp.mean(log_std**2))
    return loss, {"logp": jnp.mean(logp), "kl_sample": jnp.mean(logp - logp_k), "q1_pi": jnp.mean(q1)}


def sac_actor_loss(params, apply_pi, q1_fn, obs, noise, lam, reg=1e-3):
    """SAC's actor loss mean(lam log pi_theta(a) - Q1(s, a)) + the same regulariser."""
    mu, log_std = policy_params(apply_pi, params, obs)
    u, a = sample_action(mu, log_std, noise)
    logp = tanh_gaussian_log_prob(mu, log_std, u)
    q1 = q1_fn(obs, a)
    loss = jnp.mean(lam * logp - q1) + reg * (jnp.mean(mu**2) + jnp.mean(log_std**2))
    return loss, {"logp": jnp.mean(logp), "kl_sample": jnp.zeros(()), "q1_pi": jnp.mean(q1)}


def critic_loss(critic_params, apply_q, apply_v, batch, v_next_target, q_pi_min, logp_pi, gamma, lam):
    """SAC-v1 critic: 0.5 MSE of Q1, Q2 to r + gamma (1 - term) V_bar(s') and of V to
    min(Q1, Q2)(s, a~pi) - lam log pi(a|s). Targets are constants."""
    q_target = jax.lax.stop_gradient(batch.reward + gamma * (1.0 - batch.terminated) * v_next_target)
    v_target = jax.lax.stop_gradient(q_pi_min - lam * logp_pi)
    q1, q2 = apply_q(critic_params["q"], batch.obs, batch.action)
    v = apply_v(critic_params["v"], batch.obs)
    lq1, lq2 = 0.5 * jnp.mean((q1 - q_target) ** 2), 0.5 * jnp.mean((q2 - q_target) ** 2)
    lv = 0.5 * jnp.mean((v - v_target) ** 2)
    return lq1 + lq2 + lv, {"q1_loss": lq1, "q2_loss": lq2, "v_loss": lv, "q1": jnp.mean(q1)}


def refresh_old_policy(step, m, params, params_old):
    """theta_k <- theta at gradient steps 0, m, 2m, ... (branch-free, vmap-safe)."""
    copy = (step % m) == 0
    return jax.tree.map(lambda p, o: jnp.where(copy, p, o), params, params_old)


# ----------------------------------------------------------------------------- training
class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array  # in [-1, 1]
    reward: jax.Array
    terminated: jax.Array  # float: 1 where s' is terminal (time limits are not)
    next_obs: jax.Array  # info["final_observation"]


class Learner(NamedTuple):
    params_pi: Any
    params_old: Any  # theta_k
    critic: Any  # {"q": twin Q params, "v": V params}
    v_target: Any
    opt_pi: Any
    opt_critic: Any
    grad_steps: jax.Array


class TrainState(NamedTuple):
    learner: Learner
    buffer: buffers.ReplayBuffer
    env_state: Any
    obs: jax.Array
    key: jax.Array
    env_steps: jax.Array


def _example_transition(env):
    obs = jnp.zeros(env.observation_space.shape, jnp.float32)
    return Transition(obs, jnp.zeros(env.action_space.shape, jnp.float32), jnp.zeros((), jnp.float32),
                      jnp.zeros((), jnp.float32), obs)


def make_train(config: Config) -> Train:
    env = envs.make_from_config(config)
    obs_shape, act_dim = tuple(env.observation_space.shape), int(env.action_space.shape[0])
    low, high = jnp.asarray(env.action_space.low_array()), jnp.asarray(env.action_space.high_array())
    N = config.num_envs
    c = config.ent_coef if config.sac else config.kl_coef
    lam = config.ent_coef

    actor, qnet, vnet = (Actor(act_dim, tuple(config.hidden), config.activation),
                         DoubleQ(tuple(config.hidden), config.activation), VNet(tuple(config.hidden), config.activation))
    tx_pi, tx_critic = optax.adam(config.lr), optax.adam(config.critic_lr)

    def to_env(a):  # [-1, 1] -> [low, high]
        return low + (a + 1.0) * 0.5 * (high - low)

    def init(key):
        k_pi, k_q, k_v, k_env, key = jax.random.split(key, 5)
        dummy_o, dummy_a = jnp.zeros((1,) + obs_shape), jnp.zeros((1, act_dim))
        params_pi = actor.init(k_pi, dummy_o)
        critic = {"q": qnet.init(k_q, dummy_o, dummy_a), "v": vnet.init(k_v, dummy_o)}
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, N))
        buf = buffers.replay_init(_example_transition(env), config.capacity)
        zero = jnp.zeros((), jnp.int32)
        learner = Learner(params_pi, params_pi, critic, critic["v"], tx_pi.init(params_pi), tx_critic.init(critic), zero)
        return TrainState(learner, buf, env_state, obs, key, zero)

    def gradient_step(ts: Learner, buffer, key):
        k_batch, k_noise = jax.random.split(key)
        batch = buffers.replay_sample(buffer, k_batch, config.batch_size)
        noise = jax.random.normal(k_noise, (config.batch_size, act_dim))
        params_old = refresh_old_policy(ts.grad_steps, config.old_policy_every, ts.params_pi, ts.params_old)

        # actor (Q1 frozen)
        q1_fn = lambda o, a: qnet.apply(ts.critic["q"], o, a)[0]
        if config.sac:
            (pi_loss, pi_aux), g_pi = jax.value_and_grad(sac_actor_loss, has_aux=True)(
                ts.params_pi, actor.apply, q1_fn, batch.obs, noise, lam, config.policy_reg)
        else:
            (pi_loss, pi_aux), g_pi = jax.value_and_grad(mdpo_actor_loss, has_aux=True)(
                ts.params_pi, params_old, actor.apply, q1_fn, batch.obs, noise, c, lam, config.policy_reg)

        # critics, targets from the same (pre-update) policy sample
        mu, log_std = policy_params(actor.apply, ts.params_pi, batch.obs)
        u, a_pi = sample_action(mu, log_std, noise)
        logp_pi = tanh_gaussian_log_prob(mu, log_std, u)
        q_pi_min = jnp.minimum(*qnet.apply(ts.critic["q"], batch.obs, a_pi))
        v_next = vnet.apply(ts.v_target, batch.next_obs)
        (c_loss, c_aux), g_c = jax.value_and_grad(critic_loss, has_aux=True)(
            ts.critic, qnet.apply, vnet.apply, batch, v_next, q_pi_min, logp_pi, config.gamma, lam)

        upd, opt_pi = tx_pi.update(g_pi, ts.opt_pi, ts.params_pi)
        params_pi = optax.apply_updates(ts.params_pi, upd)
        upd, opt_c = tx_critic.update(g_c, ts.opt_critic, ts.critic)
        critic = optax.apply_updates(ts.critic, upd)
        v_target = jax.tree.map(lambda t, p: (1.0 - config.tau) * t + config.tau * p, ts.v_target, critic["v"])
        ts = Learner(params_pi, params_old, critic, v_target, opt_pi, opt_c, ts.grad_steps + 1)
        return ts, {"actor_loss": pi_loss, "critic_loss": c_loss, **pi_aux, **c_aux}

    def step(ts: TrainState, key):
        k_act, k_rand, k_env, k_learn, key_next = jax.random.split(key, 5)
        mu, log_std = policy_params(actor.apply, ts.learner.params_pi, ts.obs)
        noise = jnp.zeros_like(mu) if config.explore_deterministic else jax.random.normal(k_act, mu.shape)
        _, a_pi = sample_action(mu, log_std, noise)
        a_rand = jax.random.uniform(k_rand, a_pi.shape, minval=-1.0, maxval=1.0)
        action = jnp.where(ts.env_steps < config.learning_starts, a_rand, a_pi)
        obs, env_state, reward, term, trunc, info = jax.vmap(env.step)(jax.random.split(k_env, N), ts.env_state,
                                                                       to_env(action))
        tr = Transition(ts.obs, action, reward, term.astype(jnp.float32), info["final_observation"])
        ts = ts._replace(buffer=buffers.replay_add(ts.buffer, tr), env_state=env_state, obs=obs,
                         env_steps=ts.env_steps + N)
        # one gradient step once warm-up is over (computed always, kept only then: vmap-safe)
        learned, aux = gradient_step(ts.learner, ts.buffer, k_learn)
        learn = ts.env_steps >= config.learning_starts
        ts = ts._replace(learner=jax.tree.map(lambda new, old: jnp.where(learn, new, old), learned, ts.learner))
        aux = {k: jnp.where(learn, v, 0.0) for k, v in aux.items()}
        return ts, (episode_metrics(info, term | trunc), aux, learn)

    def update(ts: TrainState):
        key, k_steps = jax.random.split(ts.key)
        ts, (ep, aux, learn) = jax.lax.scan(step, ts._replace(key=key), jax.random.split(k_steps, config.steps_per_update))
        n_learn = jnp.maximum(jnp.sum(learn), 1)
        metrics = {k: jnp.sum(v) for k, v in ep.items()}
        metrics.update({k: jnp.sum(v) / n_learn for k, v in aux.items()})
        return ts, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)

    def evaluate(ts: TrainState, key, num_episodes):
        def act(obs, _):
            mu, _ = policy_params(actor.apply, ts.learner.params_pi, obs)
            return to_env(jnp.tanh(mu))

        return evaluate_episodes(env, act, key, num_episodes, env.max_episode_steps)

    return Train(init, update, config.num_updates, config.env_steps_per_update, evaluate,
                 env_name=config.env, requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="mdpo_offpolicy", preset=preset)
