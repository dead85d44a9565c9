"""PDPPO: Post-Decision Proximal Policy Optimization with dual critics.

Paper: L. Felizardo, E. Fadda, P. Brandimarte, E. Del-Moral-Hernandez, M. Nascimento,
"Post-Decision Proximal Policy Optimization with Dual Critic Networks for Accelerated
Learning", IJCNN 2025, arXiv 2504.05150. Reference code: leokan92/pdppo (PyTorch; final
lot-sizing agent `code/Lot-sizing/agents/PDPPO.py` at bf3f368).

Many operations problems split a step into a deterministic effect of the decision (production,
a move) and exogenous noise (demand, a slip). The state right after the decision and before the
noise is the post-decision state s^x. The env reports it, and the deterministic part of the
reward r^x, in `info["post_decision_obs"]` / `info["post_decision_reward"]` (envs/lot_sizing.py,
envs/frozen_lake.py). PDPPO learns two critics:

    V(s)      on the pre-decision state,  target: discounted sum of r^pre = r - r^x
    V^x(s^x)  on the post-decision state, target: discounted sum of r^x
    A_t = max(A^pre_t, A^x_t)       (--advantage max, the final reference version)
    A^pre = GAE(r^pre, V(s)),  A^x = GAE(r^x, V^x(s^x));  with lambda = 1 and whole episodes
    these are the reference's Monte-Carlo residuals R_t - V(s_t) and R^x_t - V^x(s^x_t), with the
    critic values of behaviour time (stored, no gradient).
    L_actor = -mean_{t, m} min(rho_tm A_t, clip(rho_tm, 1-eps, 1+eps) A_t) - c_ent * mean H(pi_m)
    rho_tm = pi(a_tm | s_t) / pi_old(a_tm | s_t): one ratio per action factor (machine), as the
    reference (--no-factorised-ratio uses the joint ratio over all machines).
    L_V = mean (V(s) - R^pre)^2,  L_Vx = mean (V^x(s^x) - R^x)^2, each critic with its own Adam.

Other advantage rules (--advantage): `min` (an earlier reference version: A = R - min(V(s),
V^x(s^x)) on the full reward, both critics fitted through min(V, V^x)), `post` (the
one-critic ablation: A = R - V^x(s^x)), `state` (the reference's PPO baseline recipe: A = R - V(s),
same buffer and schedule; the post-decision critic is unused).

Schedule as the reference: every update collects 400 steps (4 envs x 100 steps = 4 whole
lot-sizing episodes; the reference runs 4 episodes one after another), appends them to a buffer
that keeps the last `buffer_chunks` = 6 rollouts (the reference trains on up to 2400
transitions and drops the oldest 400 once it holds more than 2000), and runs 40 full-batch
epochs over all of it. Old samples keep their behaviour log-probs and advantages (stale on
purpose, as in the reference). No advantage normalisation by default.

Differences from the reference, on purpose:
- the whole actor is trained; the reference passes only the actor's last Linear layer to its
  optimiser, so its hidden layers stay random (`--actor-last-layer-only` reproduces that);
- actor layers use orthogonal init (sqrt 2, heads 0.01 via rlx.networks.MultiDiscreteHead: a
  near-uniform initial policy) instead of PyTorch defaults / Kaiming for the last layer;
- the reference adds 0.7 * (detached critic losses) to the actor loss (no gradient): omitted;
- returns: GAE(lambda) with lambda = 1 by default. The pre-decision critic bootstraps from
  V(final observation) where an episode is cut by a time limit or by the rollout end; the
  post-decision critic bootstraps from V^x of the next step's post-decision state inside the
  episode and is cut (bootstrap 0) where none exists (truncation, rollout end). With the
  defaults on lot sizing (rollout = episode = 100 steps, horizon = termination) neither case occurs.

Reproduce the paper's setting (1e6 steps per seed; the reference ran 20 seeds):

    python algorithms/pdppo.py --env lot-sizing/15x5 --instance-path ../shared/data/lot_sizing/15x5.json --num-seeds 20
    python algorithms/pdppo.py --env lot-sizing/15x5 --advantage state --num-seeds 20     # PPO baseline recipe

FrozenLake with post-decision states (reference's lake settings are the preset):

    python algorithms/pdppo.py --env frozen-lake-pd --num-seeds 8
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import rlx.envs as envs
from rlx import returns
from rlx.config import ConfigError, check, field, static
from rlx.evaluate import evaluate_episodes
from rlx.networks import ACTIVATIONS, MLP, CategoricalHead, MultiDiscreteHead
from rlx.train import Train, episode_metrics

ADVANTAGES = ("max", "min", "post", "state")


@dataclass(frozen=True)
class Config:
    env: str = "lot-sizing/15x5"
    instance_path: str = static("", "lot-sizing JSON instance file passed to the env as path= ('' = the registered instance)")
    total_timesteps: int = static(1_000_000, "env steps per seed", within="[1, inf)")
    num_envs: int = static(4, "parallel envs per seed", within="[1, inf)")
    num_steps: int = static(100, "rollout length per env and update (num_envs x num_steps = the reference's 400-step update period)",
                            within="[1, inf)")
    buffer_chunks: int = static(6, "rollouts kept in the training buffer (the newest replaces the oldest)", within="[1, inf)")
    update_epochs: int = static(40, "passes over the buffer per update", within="[1, inf)")
    num_minibatches: int = static(1, "minibatches per epoch (1 = full batch, the reference)", within="[1, inf)")
    lr: float = field(5.5e-4, "actor Adam learning rate", within="(0, inf)")
    critic_lr: float = field(1e-3, "Adam learning rate of each critic", within="(0, inf)")
    gamma: float = field(0.9, "discount (the reference agents hard-code 0.9)", within="[0, 1]")
    gae_lambda: float = field(1.0, "GAE lambda (1 = the reference's Monte-Carlo returns)", within="[0, 1]")
    clip_eps: float = field(0.2, "policy ratio clip range", within="(0, inf)")
    ent_coef: float = field(0.001, "entropy bonus coefficient", within="[0, inf)")
    max_grad_norm: float = static(0.0, "global gradient-norm clip per network (0 = off, the reference)", within="[0, inf)")
    advantage: str = static("max", "how the critics combine: max (final PDPPO), min (earlier version), post (one critic on s^x), state (PPO baseline)",
                            choices=ADVANTAGES)
    normalize_advantages: bool = static(False, "normalise advantages over the buffer (earlier reference versions)")
    factorised_ratio: bool = static(True, "one PPO ratio per action factor (machine), as the reference; else the joint ratio")
    actor_hidden: Tuple[int, ...] = static((128, 128), "actor hidden widths", within="[1, inf)")
    actor_activation: str = static("relu", "actor activation", choices=ACTIVATIONS)
    critic_hidden: Tuple[int, ...] = static((128, 128), "critic hidden widths (both critics)", within="[1, inf)")
    critic_activation: str = static("tanh", "critic activation", choices=ACTIVATIONS)
    obs_scale: float = field(1.0, "multiply observations (and post-decision observations) by this before the networks",
                             within="(0, inf)")
    actor_last_layer_only: bool = static(False, "train only the actor's output layer (reproduces a reference-code bug)")

    def validate(self) -> None:
        batch = self.num_envs * self.num_steps * self.buffer_chunks
        check(batch % self.num_minibatches == 0,
              f"the buffer num_envs x num_steps x buffer_chunks = {batch} does not split into --num-minibatches "
              f"{self.num_minibatches}; choose a divisor of {batch}")
        check(self.total_timesteps >= self.num_envs * self.num_steps,
              f"--total-timesteps {self.total_timesteps} is less than one rollout ({self.num_envs * self.num_steps})")
        env = make_env(self)
        check(env.action_kind in ("discrete", "multi_discrete"),
              f"PDPPO needs discrete or multi-discrete actions; {self.env} has {env.action_kind} actions")
        _, state = env.reset(jax.random.PRNGKey(0))
        info = jax.eval_shape(lambda s: env.step(jax.random.PRNGKey(0), s, env.action_space.sample(jax.random.PRNGKey(0))), state)[-1]
        check("post_decision_obs" in info and "post_decision_reward" in info,
              f"PDPPO needs an env that reports info['post_decision_obs'] and info['post_decision_reward'] "
              f"(e.g. lot-sizing/15x5, frozen-lake-pd); {self.env} does not")


def preset(env: str) -> dict:
    """Per-env defaults (explicit flags override them)."""
    if env.startswith("frozen-lake-pd"):  # reference Lake agent (commits a2414780 / dd3f453)
        return dict(total_timesteps=200_000, num_envs=6, num_steps=100, buffer_chunks=1, gamma=0.991,
                    clip_eps=0.21, lr=4e-4, critic_lr=1.2e-3, ent_coef=0.012, max_grad_norm=1.0,
                    actor_activation="tanh")
    return {}


def make_env(config):
    """The env, with `--instance-path` read and validated (lot-sizing envs only): a missing file, bad
    JSON or an instance that breaks the format or a physical constraint stops here, naming the file
    and the field."""
    if not config.instance_path:
        return envs.make(config.env)
    check(config.env.startswith("lot-sizing/"),
          f"--instance-path is a lot-sizing instance file; {config.env} is not a lot-sizing env (use lot-sizing/file)")
    try:
        return envs.make(config.env, path=config.instance_path)
    except ValueError as e:
        raise ConfigError(f"--instance-path: {e}") from None


# ----------------------------------------------------------------------------- networks
class Actor(nn.Module):
    action_space: Any
    hidden: Tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, obs):
        x = MLP(self.hidden, self.activation, init="orthogonal", name="torso")(obs)
        if isinstance(self.action_space, envs.spaces.MultiDiscrete):
            return MultiDiscreteHead(self.action_space.nvec, name="head")(x)
        return CategoricalHead(self.action_space.n, name="head")(x)


class Critic(nn.Module):
    """MLP -> scalar, Xavier-uniform weights and zero biases (the reference critics)."""

    hidden: Tuple[int, ...]
    activation: str

    @nn.compact
    def __call__(self, x):
        x = MLP(self.hidden, self.activation, init="xavier")(x)
        return nn.Dense(1, kernel_init=nn.initializers.xavier_uniform(), bias_init=nn.initializers.zeros)(x)[..., 0]


def factor_log_probs(pi, action):
    """Log-probs and entropies per action factor: [..., M] for multi-discrete, [..., 1] otherwise."""
    base = getattr(pi, "distribution", None)
    if base is not None:  # distrax.Independent over machines
        return base.log_prob(action), base.entropy()
    return pi.log_prob(action)[..., None], pi.entropy()[..., None]


# ----------------------------------------------------------------------------- losses
def combine_advantages(rule, r_pre, r_x, v, vx, next_v, next_vx, terminated, cut_pre, cut_x, gamma, lam):
    """Advantages and critic targets for one rollout (time-major [T, N]).

    r_pre / r_x: the stochastic and deterministic reward parts; v = V(s_t), vx = V^x(s^x_t);
    next_v = V(s_{t+1}) (of the final observation at episode ends), next_vx = V^x(s^x_{t+1});
    cut_pre / cut_x: where the recursion stops (episode end or rollout end) and, for cut_x, the
    next post-decision value is not known (it is taken as 0 there unless terminated).
    Returns (advantage, target_v, target_vx)."""
    zeros = jnp.zeros_like(r_pre)
    if rule == "max":
        a_pre, t_v = returns.gae(r_pre, v, next_v, terminated, cut_pre, gamma, lam)
        a_x, t_vx = returns.gae(r_x, vx, next_vx, terminated, cut_x, gamma, lam)
        return jnp.maximum(a_pre, a_x), t_v, t_vx
    r = r_pre + r_x
    if rule == "state":
        a, t = returns.gae(r, v, next_v, terminated, cut_pre, gamma, lam)
        return a, t, zeros
    if rule == "post":
        a, t = returns.gae(r, vx, next_vx, terminated, cut_x, gamma, lam)
        return a, zeros, t
    # "min": one value min(V, V^x); where the next post value is unknown use V alone
    vm = jnp.minimum(v, vx)
    next_vm = jnp.where(cut_x, next_v, jnp.minimum(next_v, next_vx))
    a, t = returns.gae(r, vm, next_vm, terminated, cut_pre, gamma, lam)
    return a, t, t


def policy_loss(log_prob, old_log_prob, adv, clip_eps):
    """Clipped surrogate with one ratio per factor: log-probs [B, F], adv [B] (broadcast to every
    factor); the mean runs over batch and factors. Returns per-sample losses [B] (mean over F)."""
    ratio = jnp.exp(log_prob - old_log_prob)
    a = adv[:, None]
    surr = jnp.minimum(ratio * a, jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * a)
    clipped = (jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)
    approx_kl = (ratio - 1.0) - (log_prob - old_log_prob)
    return -surr.mean(-1), clipped.mean(-1), approx_kl.mean(-1)


def masked_mean(x, mask):
    return jnp.sum(x * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def pdppo_loss(params, mb, mask, actor, critic, config):
    """Total loss of one (mini)batch `mb` (a Sample) with validity `mask` [B]: the actor's clipped
    surrogate and entropy plus the critics' MSEs. The networks have disjoint parameters, so one
    gradient of the sum equals three separate updates; the advantage is stored data, so no gradient
    reaches a critic through it. Returns (total, metrics)."""
    pi = actor.apply(params["actor"], mb.obs * config.obs_scale)
    log_prob, entropy = factor_log_probs(pi, mb.action)
    old = mb.log_prob
    if not config.factorised_ratio:
        log_prob, old = log_prob.sum(-1, keepdims=True), old.sum(-1, keepdims=True)
    pg, clipped, kl = policy_loss(log_prob, old, mb.advantage, config.clip_eps)
    ent = entropy.mean(-1)
    actor_loss = masked_mean(pg, mask) - config.ent_coef * masked_mean(ent, mask)
    v = critic.apply(params["critic"], mb.obs * config.obs_scale)
    vx = critic.apply(params["critic_x"], mb.post_obs * config.obs_scale)
    zero = jnp.zeros(())
    if config.advantage == "min":  # one value min(V, V^x) fitted to the full return
        critic_loss, critic_x_loss = masked_mean((jnp.minimum(v, vx) - mb.target_v) ** 2, mask), zero
    else:
        critic_loss = masked_mean((v - mb.target_v) ** 2, mask) if config.advantage in ("max", "state") else zero
        critic_x_loss = masked_mean((vx - mb.target_vx) ** 2, mask) if config.advantage in ("max", "post") else zero
    total = actor_loss + critic_loss + critic_x_loss
    return total, dict(actor_loss=actor_loss, critic_loss=critic_loss, critic_x_loss=critic_x_loss,
                       entropy=masked_mean(ent, mask), clip_frac=masked_mean(clipped, mask),
                       approx_kl=masked_mean(kl, mask))


# ----------------------------------------------------------------------------- training
class Sample(NamedTuple):
    """What the buffer keeps per transition."""

    obs: jax.Array
    post_obs: jax.Array
    action: jax.Array
    log_prob: jax.Array  # behaviour log-prob per factor [F]
    advantage: jax.Array
    target_v: jax.Array
    target_vx: jax.Array


class TrainState(NamedTuple):
    params: Any  # {"actor", "critic", "critic_x"}
    opt_state: Any
    env_state: Any
    obs: jax.Array
    buffer: Sample  # leaves [buffer_chunks, num_steps * num_envs, ...]
    valid: jax.Array  # [buffer_chunks] which chunks hold data
    chunk: jax.Array  # next chunk to overwrite
    key: jax.Array


def make_train(config: Config) -> Train:
    env = make_env(config)
    obs_dim = env.observation_space.shape[0]
    space = env.action_space
    n_factors = len(space.nvec) if isinstance(space, envs.spaces.MultiDiscrete) else 1
    actor = Actor(space, tuple(config.actor_hidden), config.actor_activation)
    critic = Critic(tuple(config.critic_hidden), config.critic_activation)
    rule = config.advantage
    steps_per_update = config.num_envs * config.num_steps
    num_updates = config.total_timesteps // steps_per_update
    capacity = config.buffer_chunks * steps_per_update
    mb_size = capacity // config.num_minibatches

    def adam(lr):
        if config.max_grad_norm > 0:
            return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr))
        return optax.adam(lr)

    actor_tx = adam(config.lr)
    if config.actor_last_layer_only:
        actor_tx = optax.multi_transform({"train": actor_tx, "frozen": optax.set_to_zero()},
                                         lambda p: {"params": {"torso": jax.tree.map(lambda _: "frozen", p["params"]["torso"]),
                                                               "head": jax.tree.map(lambda _: "train", p["params"]["head"])}})
    txs = {"actor": actor_tx, "critic": adam(config.critic_lr), "critic_x": adam(config.critic_lr)}

    def scale(o):
        return o.astype(jnp.float32) * config.obs_scale

    def init(key):
        k_a, k_c, k_x, k_env, key = jax.random.split(key, 5)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, config.num_envs))
        dummy = jnp.zeros((1, obs_dim))
        params = {"actor": actor.init(k_a, dummy), "critic": critic.init(k_c, dummy), "critic_x": critic.init(k_x, dummy)}
        opt_state = {k: txs[k].init(params[k]) for k in txs}
        example = Sample(jnp.zeros(obs_dim), jnp.zeros(obs_dim), jnp.zeros(space.shape, jnp.int32),
                         jnp.zeros(n_factors), jnp.zeros(()), jnp.zeros(()), jnp.zeros(()))
        buffer = jax.tree.map(lambda x: jnp.zeros((config.buffer_chunks, steps_per_update) + x.shape, x.dtype), example)
        return TrainState(params, opt_state, env_state, obs, buffer, jnp.zeros(config.buffer_chunks, bool),
                          jnp.zeros((), jnp.int32), key)

    def env_step(ts, _):
        key, k_act, k_step = jax.random.split(ts.key, 3)
        pi = actor.apply(ts.params["actor"], scale(ts.obs))
        action = pi.sample(seed=k_act)
        log_prob, _ = factor_log_probs(pi, action)
        obs, env_state, reward, term, trunc, info = jax.vmap(env.step)(
            jax.random.split(k_step, config.num_envs), ts.env_state, action)
        r_x = info["post_decision_reward"].astype(jnp.float32)
        tr = dict(obs=ts.obs, post_obs=info["post_decision_obs"], action=action.astype(jnp.int32), log_prob=log_prob,
                  r_pre=reward - r_x, r_x=r_x, terminated=term, truncated=trunc, final_obs=info["final_observation"])
        ep = episode_metrics(info, term | trunc, keep_env_axes=True)
        return ts._replace(env_state=env_state, obs=obs, key=key), (tr, ep)

    def loss_fn(params, mb, mask):
        return pdppo_loss(params, mb, mask, actor, critic, config)

    def update(ts: TrainState):
        ts, (traj, ep) = jax.lax.scan(env_step, ts, None, config.num_steps)
        # behaviour-time critic values (the policy that acted; no gradient)
        p = ts.params
        v = critic.apply(p["critic"], scale(traj["obs"]))
        vx = critic.apply(p["critic_x"], scale(traj["post_obs"]))
        next_v = critic.apply(p["critic"], scale(traj["final_obs"]))
        term, trunc = traj["terminated"], traj["truncated"]
        ended = term | trunc
        last = jnp.zeros_like(ended).at[-1].set(True)
        cut_pre = trunc | last
        cut_x = ended | last  # the next post-decision state is unknown there
        next_vx = jnp.where(cut_x, 0.0, jnp.concatenate([vx[1:], jnp.zeros_like(vx[:1])]))
        adv, t_v, t_vx = combine_advantages(rule, traj["r_pre"], traj["r_x"], v, vx, next_v, next_vx, term,
                                            cut_pre & ~term, cut_x & ~term, config.gamma, config.gae_lambda)
        flat = lambda x: x.reshape((steps_per_update,) + x.shape[2:])
        new = Sample(flat(traj["obs"]).astype(jnp.float32), flat(traj["post_obs"]).astype(jnp.float32),
                     flat(traj["action"]), flat(traj["log_prob"]), flat(adv), flat(t_v), flat(t_vx))
        buffer = jax.tree.map(lambda b, x: b.at[ts.chunk].set(x), ts.buffer, new)
        valid = ts.valid.at[ts.chunk].set(True)
        data = jax.tree.map(lambda x: x.reshape((capacity,) + x.shape[2:]), buffer)
        mask = jnp.repeat(valid, steps_per_update).astype(jnp.float32)
        if config.normalize_advantages:
            mean = masked_mean(data.advantage, mask)
            std = jnp.sqrt(masked_mean((data.advantage - mean) ** 2, mask))
            data = data._replace(advantage=(data.advantage - mean) / (std + 1e-8))

        def epoch(carry, _):
            params, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            perm = jax.random.permutation(k_perm, capacity) if config.num_minibatches > 1 else jnp.arange(capacity)
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, mb_size) + x.shape[1:]), (data, mask))

            def minibatch(carry, mb):
                params, opt_state = carry
                grads, info = jax.grad(loss_fn, has_aux=True)(params, *mb)
                new_params, new_opt = {}, {}
                for k in txs:
                    upd, new_opt[k] = txs[k].update(grads[k], opt_state[k], params[k])
                    new_params[k] = optax.apply_updates(params[k], upd)
                return (new_params, new_opt), info

            (params, opt_state), info = jax.lax.scan(minibatch, (params, opt_state), shuffled)
            return (params, opt_state, key), info

        key, k_epochs = jax.random.split(ts.key)
        (params, opt_state, _), info = jax.lax.scan(epoch, (ts.params, ts.opt_state, k_epochs), None, config.update_epochs)
        metrics = {k: v.mean() for k, v in info.items()}
        metrics.update({k: v.sum() for k, v in ep.items()})
        metrics["advantage_mean"] = jnp.mean(adv)
        metrics["buffer_size"] = jnp.sum(mask)
        ts = ts._replace(params=params, opt_state=opt_state, buffer=buffer, valid=valid,
                         chunk=(ts.chunk + 1) % config.buffer_chunks, key=key)
        return ts, metrics

    def evaluate(ts: TrainState, key, num_episodes):
        def act(obs, _):
            return actor.apply(ts.params["actor"], scale(obs)).mode()

        return evaluate_episodes(env, act, key, num_episodes)

    return Train(init=init, update=update, num_updates=num_updates, env_steps_per_update=steps_per_update,
                 evaluate=evaluate,
                 env_name=config.env, requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="pdppo", preset=preset)
