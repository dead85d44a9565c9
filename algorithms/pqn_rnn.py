"""Recurrent PQN: Q(lambda) with a LayerNorm MLP + GRU Q-network, no target network, no replay.

Paper: Gallici et al., "Simplifying Deep Temporal Difference Learning", arXiv 2407.04811 (ICLR 2025).
Reference implementation whose settings are the defaults: purejaxql (mttga/purejaxql @ 47af6d7)
`purejaxql/pqn_rnn_gymnax.py` with `config/alg/pqn_rnn_cartpole.yaml` (CartPole) and
`config/alg/pqn_rnn_memory_chain.yaml` (bsuite MemoryChain).

Network: MLP ([Dense(w) -> LayerNorm -> ReLU] for each width w in `hidden`) -> concat one-hot(last
action) -> GRU(hidden[-1]) whose state is zeroed at every episode start -> Dense(num_actions).

One update:
1. rollout: `num_steps` epsilon-greedy steps of `num_envs` envs, carrying the GRU state; every
   step stores the GRU state it started from, the episode-start flag and the previous action;
2. training sequences are whole per-env sequences of `memory_window + num_steps` steps: the last
   `memory_window` steps of the previous update are prepended (burn-in for the hidden state; at
   the first update they come from a uniformly random rollout made at init);
3. `update_epochs` passes; each shuffles the envs and splits them into `num_minibatches` groups. Per
   minibatch: run the network over the sequences from the stored GRU state of their first step,
   compute Peng's Q(lambda) targets from stop_gradient of these Q-values (so targets follow the
   current parameters at every gradient step),
       R_{L-2} = r_{L-2} + gamma (1 - term) max_a Q(s_{L-1}, a)
       R_t     = r_t + gamma (1 - term_t) [(1 - lambda) max_a Q(s_{t+1}, a) + lambda R_{t+1}]
   (recursion cut at episode ends; rlx.returns.lambda_returns), and minimise
   0.5 mean((Q(s_t, a_t) - R_t)^2) over t = 0..L-2 (the last step only bootstraps); RAdam after
   global-norm clipping, lr decayed linearly.

Truncation: with `bootstrap_truncation` (default) a time-limit step bootstraps from
max_a Q(final observation), computed during the rollout from the GRU state after that step (so with
the rollout's parameters); `--no-bootstrap-truncation` treats time limits as terminations like
purejaxql.

Differences from purejaxql, on purpose: the last-action input is zeroed at episode starts (purejaxql
feeds the previous episode's last action there, letting one bit cross the reset); no dummy
BatchNorm; the truncation rule above; greedy evaluation through the runner.

Reproduce (purejaxql settings):

    python algorithms/pqn_rnn.py --env CartPole-v1 --num-seeds 4
    python algorithms/pqn_rnn.py --env MemoryChain-bsuite --memory-length 100 --num-seeds 4

(4 seeds: greedy 500 on CartPole, and at memory length 100 3 of 4 seeds at 1.0 on MemoryChain;
benchmarks/results/pqn_rnn.md. The GRU is scanned step by step in every minibatch, so on a CPU
the CartPole run takes ~50 CPU-minutes.)

Without `--memory-length`, MemoryChain-bsuite runs at gymnax's default memory length 5 (the context
bit is shown at the first step and must be recalled 5 steps later); purejaxql's config uses 100.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

import rlx.envs as envs
from rlx import returns
from rlx.config import check, field, static
from rlx.networks import MLP, QHead, ResetGRU
from rlx.train import Train, episode_metrics


EVAL_EPISODES = 128  # greedy episodes per evaluation (purejaxql TEST_NUM_ENVS)


@dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    memory_length: int = static(0, "MemoryChain-bsuite: steps between the context bit and the query (0: gymnax's 5)",
                                within="[0, inf)")
    total_timesteps: int = static(500_000, "env steps per seed", within="[1, inf)")
    total_timesteps_decay: int = static(0, "env steps over which eps and lr schedules run (0: total_timesteps)",
                                        within="[0, inf)")
    num_envs: int = static(32, "parallel envs per seed", within="[1, inf)")
    num_steps: int = static(64, "rollout length per env and update", within="[1, inf)")
    memory_window: int = static(4, "steps of the previous rollout prepended to each training sequence",
                                within="[0, inf)")
    update_epochs: int = static(4, "passes over each rollout", within="[1, inf)")
    num_minibatches: int = static(16, "minibatches per epoch (they split the envs: whole sequences)", within="[1, inf)")
    lr: float = field(1e-4, "RAdam learning rate", within="(0, inf)")
    anneal_lr: bool = static(True, "decay lr linearly to 1e-20 over all gradient steps")
    max_grad_norm: float = field(10.0, "global gradient-norm clip", within="(0, inf)")
    gamma: float = field(0.99, "discount", within="[0, 1]")
    q_lambda: float = field(0.95, "lambda of the Q(lambda) targets", within="[0, 1]")
    eps_start: float = field(1.0, "initial exploration epsilon", within="[0, 1]")
    eps_finish: float = field(0.2, "final exploration epsilon", within="[0, 1]")
    eps_decay: float = field(0.2, "fraction of the updates over which epsilon decays linearly", within="(0, inf)")
    reward_scale: float = field(0.1, "rewards are multiplied by this before the targets", within="(0, inf)")
    hidden: Tuple[int, ...] = static((256, 256), "widths of the MLP layers before the GRU; the GRU has hidden[-1] units",
                                     within="[1, inf)")
    layer_norm: bool = static(True, "LayerNorm before every MLP activation")
    last_action: bool = static(True, "feed the one-hot previous action to the GRU")
    bootstrap_truncation: bool = static(True, "bootstrap from the final observation at time limits "
                                              "(False: treat them as terminations, like purejaxql)")

    def validate(self) -> None:
        check(self.memory_window + self.num_steps >= 2, "training sequences need at least 2 steps")
        check(self.num_envs % self.num_minibatches == 0,
              f"minibatches hold whole env sequences: --num-minibatches {self.num_minibatches} must divide "
              f"--num-envs {self.num_envs}")
        batch = self.num_envs * self.num_steps
        check(self.total_timesteps >= batch,
              f"--total-timesteps {self.total_timesteps} is less than one rollout (num_envs x num_steps = {batch})")
        check(self.memory_length == 0 or self.env == "MemoryChain-bsuite",
              f"--memory-length only applies to MemoryChain-bsuite (env is {self.env})")
        env = make_env(self)
        check(env.action_kind == "discrete",
              f"PQN-RNN needs a discrete action space (one Q-value per action); {self.env} has "
              f"{env.action_kind} actions. Use a continuous-action algorithm (e.g. algorithms/ppo.py).")
        check(len(env.observation_space.shape) == 1,
              f"pqn_rnn's MLP takes vector observations; {self.env} has shape {env.observation_space.shape}")


def make_env(config):
    if config.memory_length:
        return envs.make(config.env, params={"memory_length": config.memory_length})
    return envs.make(config.env)


def preset(env: str) -> dict:
    """Per-env defaults (explicit flags override them)."""
    if env == "MemoryChain-bsuite":  # purejaxql config/alg/pqn_rnn_memory_chain.yaml
        return dict(total_timesteps=100_000, num_envs=32, num_steps=128, memory_window=4, update_epochs=4,
                    num_minibatches=16, lr=1e-3, anneal_lr=False, max_grad_norm=10.0, gamma=0.99,
                    q_lambda=0.95, eps_start=1.0, eps_finish=0.01, eps_decay=0.1, reward_scale=1.0)
    return {}  # CartPole-v1 (config/alg/pqn_rnn_cartpole.yaml) = the Config defaults


# ----------------------------------------------------------------------------------------------
# network


class RNNQNetwork(nn.Module):
    num_actions: int
    hidden: Tuple[int, ...] = (256, 256)  # MLP widths; the GRU has hidden[-1] units
    layer_norm: bool = True
    last_action: bool = True

    @nn.compact
    def __call__(self, h, obs, starts, last_action):
        """h [B, H]; obs [T, B, F]; starts, last_action [T, B] -> (h [B, H], Q [T, B, A])."""
        x = MLP(tuple(self.hidden), "relu", layer_norm=self.layer_norm, init="lecun")(obs)
        if self.last_action:  # no action is carried into a new episode
            x = jnp.concatenate([x, jax.nn.one_hot(last_action, self.num_actions) * (1.0 - starts[..., None])], -1)
        h, y = ResetGRU(self.hidden[-1])(h, x, starts)
        return h, QHead(self.num_actions)(y)


# ----------------------------------------------------------------------------------------------
# training


class Transition(NamedTuple):
    h: jax.Array  # GRU state before this step [N, H]
    obs: jax.Array
    start: jax.Array  # obs is the first observation of an episode
    last_action: jax.Array  # action taken before obs (ignored where start)
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    trunc_next_q: jax.Array  # max_a Q(final observation) (used only where truncated)


class Actor(NamedTuple):  # what the rollout carries from step to step
    h: jax.Array
    obs: jax.Array
    start: jax.Array
    last_action: jax.Array
    env_state: Any


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    actor: Actor
    memory: Transition  # the last memory_window + num_steps transitions [L, N, ...]
    key: jax.Array
    n_updates: jax.Array


def epsilon_greedy(key, q_vals, eps):
    """argmax_a Q with probability 1 - eps, else a uniform action; independent per row."""
    k_explore, k_action = jax.random.split(key)
    greedy = jnp.argmax(q_vals, axis=-1)
    random_action = jax.random.randint(k_action, greedy.shape, 0, q_vals.shape[-1])
    return jnp.where(jax.random.uniform(k_explore, greedy.shape) < eps, random_action, greedy)


def sequence_targets(rewards, q_vals, terminated, truncated, trunc_next_q, gamma, lam):
    """Q(lambda) targets [L-1, B] for steps 0..L-2 of sequences with Q-values q_vals [L, B, A]:
    step t bootstraps from max q_vals[t+1] (or trunc_next_q[t] where truncated)."""
    next_q = jnp.max(q_vals[1:], axis=-1)
    next_q = jnp.where(truncated[:-1] > 0, trunc_next_q[:-1], next_q)
    return returns.lambda_returns(rewards[:-1], next_q, terminated[:-1], truncated[:-1], gamma, lam)


class Parts(NamedTuple):
    """Recurrent PQN's pieces for one Config as pure functions: `make_train` assembles them, tests
    call them one by one."""

    init: Callable  # key -> TrainState
    update: Callable  # TrainState -> (TrainState, metrics)
    evaluate: Callable  # (TrainState, key, num_episodes) -> mean greedy return (GRU state carried)
    learn: Callable  # (params, opt_state, key, memory) -> (params, opt_state, losses, mean Q(s,a))
    loss_fn: Callable  # (params, sequences [L, b, ...]) -> (loss, Q(s, a))
    q_step: Callable  # (params, h, obs, start, last_action) -> (h', Q [B, A]): one time step
    network: Any  # the RNNQNetwork (its apply runs whole sequences)
    tx: Any  # the optax optimiser (clip + RAdam)
    lr: Callable  # gradient step -> learning rate
    epsilon: Callable  # updates done -> exploration epsilon
    num_updates: int
    num_updates_decay: int  # updates over which epsilon and lr decay
    batch: int  # env steps per update (num_envs x num_steps)


def build(config: Config) -> Parts:
    """Every piece of recurrent PQN as pure functions (make_train assembles them)."""
    env = make_env(config)
    num_actions = env.action_space.n
    N, H = config.num_envs, config.hidden[-1]
    L = config.memory_window + config.num_steps
    envs_per_minibatch = N // config.num_minibatches
    batch = N * config.num_steps
    num_updates = config.total_timesteps // batch
    num_updates_decay = (config.total_timesteps_decay or config.total_timesteps) // batch

    network = RNNQNetwork(num_actions, tuple(config.hidden), config.layer_norm, config.last_action)

    def q_step(params, h, obs, start, last_action):
        """One time step for a batch of envs: (h', Q [B, A])."""
        h, q = network.apply(params, h, obs[None], start[None], last_action[None])
        return h, q[0]

    if config.anneal_lr:
        lr = optax.linear_schedule(config.lr, 1e-20, num_updates_decay * config.num_minibatches * config.update_epochs)
    else:
        lr = optax.constant_schedule(config.lr)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.radam(lr))

    def epsilon(n_updates):
        frac = jnp.clip(n_updates / (config.eps_decay * num_updates_decay), 0.0, 1.0)
        return config.eps_start + frac * (config.eps_finish - config.eps_start)

    def rollout(params, actor: Actor, key, eps, num_steps):
        def step(carry, _):
            actor, key = carry
            key, k_act, k_step = jax.random.split(key, 3)
            h, q_vals = q_step(params, actor.h, actor.obs, actor.start, actor.last_action)
            action = epsilon_greedy(k_act, q_vals, eps)
            next_obs, env_state, reward, term, trunc, info = jax.vmap(env.step)(
                jax.random.split(k_step, N), actor.env_state, action)
            if config.bootstrap_truncation:  # Q of the episode's last observation, after this step's GRU update
                _, q_final = q_step(params, h, info["final_observation"], jnp.zeros_like(term), action)
                trunc_next_q = jnp.max(q_final, axis=-1)
            else:
                trunc_next_q = jnp.zeros_like(reward)
            tr = Transition(actor.h, actor.obs, actor.start, actor.last_action, action, reward, term, trunc,
                            trunc_next_q)
            stats = {k: info[k] for k in ("episode_return", "episode_length")}
            return (Actor(h, next_obs, term | trunc, action, env_state), key), (tr, stats)

        (actor, key), (traj, stats) = jax.lax.scan(step, (actor, key), None, num_steps)
        return actor, traj, stats

    def init(key) -> TrainState:
        k_net, k_env, k_mem, key = jax.random.split(key, 4)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, N))
        actor = Actor(jnp.zeros((N, H)), obs, jnp.ones((N,), bool), jnp.zeros((N,), jnp.int32), env_state)
        params = network.init(k_net, actor.h, obs[None], actor.start[None], actor.last_action[None])
        # a uniformly random rollout fills the first memory window (as in purejaxql)
        actor, memory, _ = rollout(params, actor, k_mem, 1.0, L)
        return TrainState(params, tx.init(params), actor, memory, key, jnp.zeros((), jnp.int32))

    def loss_fn(params, seq: Transition):
        """seq: whole sequences [L, b, ...]; the GRU starts from the stored state of step 0."""
        _, q_vals = network.apply(params, seq.h[0], seq.obs, seq.start, seq.last_action)
        term = seq.terminated.astype(jnp.float32)
        trunc = seq.truncated.astype(jnp.float32)
        if not config.bootstrap_truncation:  # purejaxql: a time limit ends the episode like a termination
            term, trunc = jnp.maximum(term, trunc), jnp.zeros_like(trunc)
        target = sequence_targets(seq.reward * config.reward_scale, jax.lax.stop_gradient(q_vals), term, trunc,
                                  seq.trunc_next_q, config.gamma, config.q_lambda)
        q_sa = jnp.take_along_axis(q_vals, seq.action[..., None], axis=-1)[..., 0][:-1]
        return 0.5 * jnp.mean(jnp.square(q_sa - target)), q_sa

    def learn(params, opt_state, key, memory: Transition):
        def epoch(carry, _):
            params, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            perm = jax.random.permutation(k_perm, N)  # shuffle envs; sequences stay whole

            def split(x):
                x = x[:, perm].reshape((x.shape[0], config.num_minibatches, envs_per_minibatch) + x.shape[2:])
                return jnp.swapaxes(x, 0, 1)  # [minibatches, L, b, ...]

            def minibatch_step(carry, seq):
                params, opt_state = carry
                (loss, q_sa), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, seq)
                upd, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, upd), opt_state), (loss, q_sa.mean())

            (params, opt_state), out = jax.lax.scan(minibatch_step, (params, opt_state), jax.tree.map(split, memory))
            return (params, opt_state, key), out

        (params, opt_state, _), (loss, q_mean) = jax.lax.scan(epoch, (params, opt_state, key), None, config.update_epochs)
        return params, opt_state, loss, q_mean

    def update(ts: TrainState):
        key, k_roll, k_learn = jax.random.split(ts.key, 3)
        eps = epsilon(ts.n_updates)
        actor, traj, stats = rollout(ts.params, ts.actor, k_roll, eps, config.num_steps)
        memory = jax.tree.map(lambda m, t: jnp.concatenate([m[config.num_steps:], t], 0), ts.memory, traj)
        params, opt_state, loss, q_mean = learn(ts.params, ts.opt_state, k_learn, memory)
        grad_steps = (ts.n_updates + 1) * config.update_epochs * config.num_minibatches
        metrics = {"td_loss": loss.mean(), "q_mean": q_mean.mean(), "epsilon": jnp.asarray(eps, jnp.float32),
                   "lr": jnp.asarray(lr(grad_steps - 1), jnp.float32)}
        metrics.update(episode_metrics(stats, traj.terminated | traj.truncated))
        return TrainState(params, opt_state, actor, memory, key, ts.n_updates + 1), metrics

    def evaluate(ts: TrainState, key, num_episodes):
        """Mean first-episode return of `num_episodes` greedy envs (GRU state carried)."""
        n, steps = num_episodes, int(env.max_episode_steps or 1000)
        k_reset, k_run = jax.random.split(key)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_reset, n))
        actor = Actor(jnp.zeros((n, H)), obs, jnp.ones((n,), bool), jnp.zeros((n,), jnp.int32), env_state)

        def body(carry, k):
            actor, ret, finished = carry
            h, q_vals = q_step(ts.params, actor.h, actor.obs, actor.start, actor.last_action)
            action = jnp.argmax(q_vals, axis=-1)
            obs, env_state, reward, term, trunc, _ = jax.vmap(env.step)(jax.random.split(k, n), actor.env_state, action)
            ret = ret + reward * (1.0 - finished)
            finished = jnp.maximum(finished, (term | trunc).astype(jnp.float32))
            return (Actor(h, obs, term | trunc, action, env_state), ret, finished), None

        zeros = jnp.zeros((n,), jnp.float32)
        (_, ret, _), _ = jax.lax.scan(body, (actor, zeros, zeros), jax.random.split(k_run, steps))
        return ret.mean()

    return Parts(init=init, update=update, evaluate=evaluate, learn=learn, loss_fn=loss_fn, q_step=q_step,
                 network=network, tx=tx, lr=lr, epsilon=epsilon, num_updates=num_updates,
                 num_updates_decay=num_updates_decay, batch=batch)


def make_train(config: Config) -> Train:
    p = build(config)
    return Train(init=p.init, update=p.update, num_updates=p.num_updates, env_steps_per_update=p.batch,
                 evaluate=p.evaluate, eval_episodes=EVAL_EPISODES,
                 env_name=config.env, requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="pqn_rnn", preset=preset)
