"""PQN: parallelised Q-network — Q(lambda) with a LayerNorm Q-network, no target network, no replay.

Paper: Gallici, Fellows, Ellis, Pou, Masmitja, Foerster, Martin, "Simplifying Deep Temporal
Difference Learning", arXiv 2407.04811 (ICLR 2025). Reference implementation whose settings are
the defaults: purejaxql (mttga/purejaxql @ 47af6d7) `purejaxql/pqn_gymnax.py` with
`config/alg/pqn_cartpole.yaml`, and `pqn_minatar.py` with `config/alg/pqn_minatar.yaml`.

One update:
1. rollout: `num_steps` steps of `num_envs` vectorised envs, epsilon-greedy on the current
   Q-network (one epsilon for all envs, independent draws per env), storing Q(obs_t);
2. targets, computed once and frozen for the whole update (Peng's Q(lambda), backwards):
       R_{T-1} = r_{T-1} + gamma (1 - term_{T-1}) max_a Q(s_T, a)
       R_t     = r_t + gamma (1 - term_t) [(1 - lambda) max_a Q(s_{t+1}, a) + lambda R_{t+1}]
       R_t     = r_t + gamma (1 - term_t) max_a Q(s_{t+1}, a)   where the episode ends at t
   where s_{t+1} is the true next state (`info["final_observation"]`), so a time-limit
   truncation bootstraps from the last observation of the episode and the recursion never
   crosses into the next episode (rlx.returns.lambda_returns);
3. `update_epochs` passes over the flattened batch in `num_minibatches` shuffled minibatches of
       L = 0.5 mean((Q(s_t, a_t) - R_t)^2),
   optimised by RAdam after global-norm clipping, lr decayed linearly to ~0 over all gradient steps.

Differences from purejaxql, on purpose:
- its Q(lambda) scan is seeded with max Q(s_T) for step T-2 as well (purejaxql issue #12: step T-2
  bootstraps from the wrong state, and the error leaks into all earlier targets through lambda);
  here step t always uses max Q(s_{t+1});
- time-limit truncation is not treated as termination: targets bootstrap from Q of the final
  observation (`--no-bootstrap-truncation` restores purejaxql's rule, needed for a like-for-like
  comparison of numbers);
- no dummy BatchNorm layer (purejaxql creates one only so that `batch_stats` always exists;
  `NORM_INPUT` and `NORM_TYPE=batch_norm` are not ported: LayerNorm is the stable default);
- greedy evaluation (by default 128 envs as purejaxql's TEST_NUM_ENVS, first episode each;
  `--eval-episodes`) runs through the runner (`--eval-every`) instead of an in-jit lax.cond;
  metrics are per-update scalars.

Reproduce purejaxql's CartPole result (greedy return ~500 after 5e5 steps):

    python algorithms/pqn.py --env CartPole-v1 --num-seeds 4

MinAtar (the purejaxql MinAtar config is the preset for every `*-MinAtar` env; 1e7 steps):

    python algorithms/pqn.py --env Breakout-MinAtar --num-seeds 4

Settings of the purejaxql configs not run here (for copying into your own setup):
- Atari (`pqn_atari.yaml`, envpool, 5e7 steps = 200M frames): 128 envs x 32 steps, 32 minibatches x
  2 epochs, eps 1.0 -> 0.001 over 10% of updates, lr 2.5e-4 constant, grad clip 10, gamma 0.99,
  lambda 0.65, Nature CNN (32@8x8/4, 64@4x4/2, 64@3x3/1, Dense 512) with LayerNorm after every
  layer, He-normal init, pixels /255; envpool with episodic_life, reward_clip (+-1),
  repeat_action_probability 0, frame_skip 4, noop_max 30; 8 extra greedy test envs.
- Craftax (`pqn_craftax.yaml`, 1e9 steps): 1024 envs x 1 step, 1 minibatch x 1 epoch, eps 0.1 -> 0.005
  over 20%, lr 1e-4 linear decay, grad clip 1.0, gamma 0.99, Q_LAMBDA off (1-step targets from
  next_obs through the same network under stop_gradient), MLP 4 x 1024 with LayerNorm and a
  BatchRenorm input normalisation; optimistic resets with ratio 16.
- Craftax RNN (`pqn_rnn_craftax.yaml`): 1024 envs x 128 steps, 4 minibatches x 4 epochs, eps 1.0 ->
  0.005 over 10%, lr 3e-4 decay, grad clip 0.5, lambda 0.5, Dense 512 + one RNN layer, input norm,
  last action as input (see algorithms/pqn_rnn.py).
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
from rlx.evaluate import evaluate_episodes
from rlx.networks import MLP, QHead
from rlx.train import Train, episode_metrics


EVAL_EPISODES = 128  # greedy episodes per evaluation (purejaxql TEST_NUM_ENVS)


@dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    total_timesteps: int = static(500_000, "env steps per seed", within="[1, inf)")
    total_timesteps_decay: int = static(0, "env steps over which eps and lr schedules run (0: total_timesteps)",
                                        within="[0, inf)")
    num_envs: int = static(32, "parallel envs per seed", within="[1, inf)")
    num_steps: int = static(64, "rollout length per env and update", within="[1, inf)")
    update_epochs: int = static(4, "passes over each rollout", within="[1, inf)")
    num_minibatches: int = static(16, "minibatches per epoch", within="[1, inf)")
    lr: float = field(1e-4, "RAdam learning rate", within="(0, inf)")
    anneal_lr: bool = static(True, "decay lr linearly to 1e-20 over all gradient steps")
    max_grad_norm: float = field(10.0, "global gradient-norm clip", within="(0, inf)")
    gamma: float = field(0.99, "discount", within="[0, 1]")
    q_lambda: float = field(0.95, "lambda of the Q(lambda) targets (0: one-step Q-learning)", within="[0, 1]")
    eps_start: float = field(1.0, "initial exploration epsilon", within="[0, 1]")
    eps_finish: float = field(0.2, "final exploration epsilon", within="[0, 1]")
    eps_decay: float = field(0.2, "fraction of the updates over which epsilon decays linearly", within="(0, inf)")
    reward_scale: float = field(0.1, "rewards are multiplied by this before the targets", within="(0, inf)")
    obs_scale: float = field(1.0, "observations are multiplied by this before the network", within="(0, inf)")
    hidden: Tuple[int, ...] = static((256, 256), "hidden layer widths of the MLP (vector observations)",
                                     within="[1, inf)")
    layer_norm: bool = static(True, "LayerNorm before every hidden activation (PQN's stabiliser)")
    bootstrap_truncation: bool = static(True, "bootstrap from the final observation at time limits "
                                              "(False: treat them as terminations, like purejaxql)")

    def validate(self) -> None:
        batch = self.num_envs * self.num_steps
        check(batch % self.num_minibatches == 0,
              f"the batch num_envs x num_steps = {batch} does not split into --num-minibatches "
              f"{self.num_minibatches}; choose a divisor of {batch}")
        check(self.total_timesteps >= batch,
              f"--total-timesteps {self.total_timesteps} is less than one rollout (num_envs x num_steps = {batch})")
        check(self.total_timesteps_decay == 0 or self.total_timesteps_decay >= batch,
              f"--total-timesteps-decay must be 0 (= total) or at least one rollout ({batch}); "
              f"got {self.total_timesteps_decay}")
        env = envs.make(self.env)  # unknown names fail here with close matches
        check(env.action_kind == "discrete",
              f"PQN needs a discrete action space (one Q-value per action); {self.env} has "
              f"{env.action_kind} actions. Use algorithms/ppo.py (or another continuous-action "
              f"algorithm) for this env, or pick a discrete env such as CartPole-v1.")
        check(len(env.observation_space.shape) in (1, 3),
              f"PQN's networks take vector or [H, W, C] image observations; {self.env} has shape "
              f"{env.observation_space.shape}")


MINATAR = ("Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar", "SpaceInvaders-MinAtar")


def preset(env: str) -> dict:
    """Per-env-family defaults (explicit flags override them)."""
    if env in MINATAR:  # purejaxql config/alg/pqn_minatar.yaml (one config for every game)
        return dict(total_timesteps=10_000_000, num_envs=128, num_steps=32, update_epochs=2, num_minibatches=32,
                    lr=5e-4, anneal_lr=True, max_grad_norm=10.0, gamma=0.99, q_lambda=0.65,
                    eps_start=1.0, eps_finish=0.05, eps_decay=0.1, reward_scale=1.0,
                    # purejaxql divides MinAtar's 0/1 planes by 255 (a leftover from Atari pixels);
                    # kept so that its results reproduce
                    obs_scale=1.0 / 255.0)
    return {}  # CartPole-v1 (config/alg/pqn_cartpole.yaml) = the Config defaults


# ----------------------------------------------------------------------------------------------
# network: LayerNorm is applied before every hidden activation


class MinAtarTorso(nn.Module):
    """purejaxql's MinAtar CNN: Conv(16, 3x3, VALID) -> LN -> ReLU -> Dense(128) -> LN -> ReLU,
    He-normal kernels. Input [..., H, W, C]."""

    layer_norm: bool = True

    @nn.compact
    def __call__(self, x):
        norm = (lambda y: nn.LayerNorm()(y)) if self.layer_norm else (lambda y: y)
        batch = x.shape[:-3]
        x = x.reshape((-1,) + x.shape[-3:])
        x = nn.Conv(16, (3, 3), strides=1, padding="VALID", kernel_init=nn.initializers.he_normal())(x)
        x = nn.relu(norm(x)).reshape((x.shape[0], -1))
        x = nn.relu(norm(nn.Dense(128, kernel_init=nn.initializers.he_normal())(x)))
        return x.reshape(batch + (128,))


class QNetwork(nn.Module):
    num_actions: int
    image: bool = False  # [H, W, C] observations: MinAtar CNN; otherwise an MLP
    hidden: Tuple[int, ...] = (256, 256)
    layer_norm: bool = True

    @nn.compact
    def __call__(self, obs):
        if self.image:
            x = MinAtarTorso(self.layer_norm)(obs)
        else:  # flax default (LeCun-normal) kernels like purejaxql
            x = MLP(tuple(self.hidden), "relu", layer_norm=self.layer_norm, init="lecun")(obs)
        return QHead(self.num_actions)(x)


# ----------------------------------------------------------------------------------------------
# training


class TrainState(NamedTuple):
    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array  # current observations [num_envs, ...]
    key: jax.Array
    n_updates: jax.Array  # updates done (drives epsilon)


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    q_val: jax.Array  # Q(obs_t) under the rollout's parameters, [num_envs, num_actions]
    next_obs: jax.Array  # the true next state s_{t+1}: info["final_observation"]
    info: dict


def epsilon_greedy(key, q_vals, eps):
    """argmax_a Q with probability 1 - eps, else a uniform action; independent per row."""
    k_explore, k_action = jax.random.split(key)
    greedy = jnp.argmax(q_vals, axis=-1)
    random_action = jax.random.randint(k_action, greedy.shape, 0, q_vals.shape[-1])
    return jnp.where(jax.random.uniform(k_explore, greedy.shape) < eps, random_action, greedy)


def q_lambda_targets(rewards, q_vals, last_next_q, terminated, truncated, truncated_next_q, gamma, lam):
    """Peng's Q(lambda) targets [T, N] from a rollout (see the module docstring).

    q_vals [T, N, A] = Q(obs_t); last_next_q [N] = max_a Q(s_T) (true next state of the last step);
    truncated_next_q [T, N] = max_a Q(final observation of step t) (used only where truncated).
    Inside an episode the bootstrap of step t is max_a Q(obs_{t+1}) = max q_vals[t+1]."""
    max_q = jnp.max(q_vals, axis=-1)
    next_q = jnp.concatenate([max_q[1:], last_next_q[None]], axis=0)
    next_q = jnp.where(truncated, truncated_next_q, next_q)
    return returns.lambda_returns(rewards, next_q, terminated, truncated, gamma, lam)


class Parts(NamedTuple):
    """PQN's pieces for one Config as pure functions: `make_train` assembles them, tests call them
    one by one."""

    init: Callable  # key -> TrainState
    update: Callable  # TrainState -> (TrainState, metrics): rollout, targets, learn
    evaluate: Callable  # (TrainState, key, num_episodes) -> mean greedy return
    rollout: Callable  # TrainState -> (TrainState, Transition [num_steps, num_envs], epsilon)
    targets: Callable  # (params, Transition) -> Q(lambda) targets [num_steps, num_envs]
    learn: Callable  # (params, opt_state, key, (obs, action, target)) -> (params, opt_state, losses, mean Q(s,a))
    loss_fn: Callable  # (params, obs, action, target) -> (loss, Q(s, a))
    q_fn: Callable  # (params, obs) -> Q-values (observations scaled by obs_scale)
    tx: Any  # the optax optimiser (clip + RAdam)
    lr: Callable  # gradient step -> learning rate
    epsilon: Callable  # updates done -> exploration epsilon
    num_updates: int
    num_updates_decay: int  # updates over which epsilon and lr decay
    batch: int  # env steps per update (num_envs x num_steps)


def build(config: Config) -> Parts:
    """Every piece of PQN for `config` as pure functions (make_train assembles them; tests call
    them one by one)."""
    env = envs.make(config.env)
    num_actions = env.action_space.n
    image = len(env.observation_space.shape) == 3
    batch = config.num_envs * config.num_steps
    minibatch = batch // config.num_minibatches
    num_updates = config.total_timesteps // batch
    num_updates_decay = (config.total_timesteps_decay or config.total_timesteps) // batch

    network = QNetwork(num_actions, image, tuple(config.hidden), config.layer_norm)

    def q_fn(params, obs):
        return network.apply(params, obs * config.obs_scale)

    if config.anneal_lr:
        lr = optax.linear_schedule(config.lr, 1e-20, num_updates_decay * config.num_minibatches * config.update_epochs)
    else:
        lr = optax.constant_schedule(config.lr)
    tx = optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.radam(lr))

    def epsilon(n_updates):
        frac = jnp.clip(n_updates / (config.eps_decay * num_updates_decay), 0.0, 1.0)
        return config.eps_start + frac * (config.eps_finish - config.eps_start)

    def init(key) -> TrainState:
        k_net, k_env, key = jax.random.split(key, 3)
        obs, env_state = jax.vmap(env.reset)(jax.random.split(k_env, config.num_envs))
        params = network.init(k_net, obs[:1])
        return TrainState(params, tx.init(params), env_state, obs, key, jnp.zeros((), jnp.int32))

    def rollout(ts: TrainState):
        """num_steps epsilon-greedy steps of every env with the current parameters."""
        eps = epsilon(ts.n_updates)

        def step(carry, _):
            env_state, obs, key = carry
            key, k_act, k_step = jax.random.split(key, 3)
            q_vals = q_fn(ts.params, obs)
            action = epsilon_greedy(k_act, q_vals, eps)
            next_obs, env_state, reward, term, trunc, info = jax.vmap(env.step)(
                jax.random.split(k_step, config.num_envs), env_state, action)
            stats = {k: info[k] for k in ("episode_return", "episode_length")}
            tr = Transition(obs, action, reward, term, trunc, q_vals, info["final_observation"], stats)
            return (env_state, next_obs, key), tr

        (env_state, obs, key), traj = jax.lax.scan(step, (ts.env_state, ts.obs, ts.key), None, config.num_steps)
        return ts._replace(env_state=env_state, obs=obs, key=key), traj, eps

    def targets(params, traj: Transition):
        """Q(lambda) targets [num_steps, num_envs] of a rollout (params = the rollout's)."""
        term = traj.terminated.astype(jnp.float32)
        trunc = traj.truncated.astype(jnp.float32)
        if config.bootstrap_truncation:
            # Q of every true next state in one batched pass (needed where truncated and at T-1)
            trunc_next_q = jnp.max(q_fn(params, traj.next_obs), axis=-1)
            last_next_q = trunc_next_q[-1]
        else:  # purejaxql: a time limit ends the episode like a termination
            term, trunc = jnp.maximum(term, trunc), jnp.zeros_like(trunc)
            trunc_next_q = jnp.zeros_like(term)
            last_next_q = jnp.max(q_fn(params, traj.next_obs[-1]), axis=-1)
        return q_lambda_targets(traj.reward * config.reward_scale, traj.q_val, last_next_q, term, trunc,
                                trunc_next_q, config.gamma, config.q_lambda)

    def loss_fn(params, obs, action, target):
        q_vals = q_fn(params, obs)
        q_sa = jnp.take_along_axis(q_vals, action[:, None], axis=-1)[:, 0]
        return 0.5 * jnp.mean(jnp.square(q_sa - target)), q_sa

    def learn(params, opt_state, key, data):
        """update_epochs x num_minibatches gradient steps on data = (obs, action, target), each [batch, ...].
        Returns (params, opt_state, losses [update_epochs, num_minibatches], mean Q(s,a) of the same shape)."""

        def epoch(carry, _):
            params, opt_state, key = carry
            key, k_perm = jax.random.split(key)
            perm = jax.random.permutation(k_perm, batch)  # one permutation for obs, actions and targets
            shuffled = jax.tree.map(lambda x: x[perm].reshape((config.num_minibatches, minibatch) + x.shape[1:]), data)

            def minibatch_step(carry, mb):
                params, opt_state = carry
                (loss, q_sa), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, *mb)
                upd, opt_state = tx.update(grads, opt_state, params)
                return (optax.apply_updates(params, upd), opt_state), (loss, q_sa.mean())

            (params, opt_state), out = jax.lax.scan(minibatch_step, (params, opt_state), shuffled)
            return (params, opt_state, key), out

        (params, opt_state, _), (loss, q_mean) = jax.lax.scan(epoch, (params, opt_state, key), None, config.update_epochs)
        return params, opt_state, loss, q_mean

    def update(ts: TrainState):
        ts, traj, eps = rollout(ts)
        target = targets(ts.params, traj)  # frozen for every epoch and minibatch of this update
        data = (traj.obs.reshape((batch,) + traj.obs.shape[2:]), traj.action.reshape(batch), target.reshape(batch))
        key, k_learn = jax.random.split(ts.key)
        params, opt_state, loss, q_mean = learn(ts.params, ts.opt_state, k_learn, data)
        grad_steps = (ts.n_updates + 1) * config.update_epochs * config.num_minibatches
        metrics = {
            "td_loss": loss.mean(),
            "q_mean": q_mean.mean(),
            "target_mean": target.mean(),
            "epsilon": jnp.asarray(eps, jnp.float32),
            "lr": jnp.asarray(lr(grad_steps - 1), jnp.float32),  # lr of this update's last gradient step
        }
        metrics.update(episode_metrics(traj.info, traj.terminated | traj.truncated))
        ts = ts._replace(params=params, opt_state=opt_state, key=key, n_updates=ts.n_updates + 1)
        return ts, metrics

    def evaluate(ts: TrainState, key, num_episodes):
        return evaluate_episodes(env, lambda obs, _: jnp.argmax(q_fn(ts.params, obs), axis=-1), key,
                                 num_episodes, max_steps=env.max_episode_steps)

    return Parts(init=init, update=update, evaluate=evaluate, rollout=rollout, targets=targets, learn=learn,
                 loss_fn=loss_fn, q_fn=q_fn, tx=tx, lr=lr, epsilon=epsilon, num_updates=num_updates,
                 num_updates_decay=num_updates_decay, batch=batch)


def make_train(config: Config) -> Train:
    p = build(config)
    return Train(init=p.init, update=p.update, num_updates=p.num_updates, env_steps_per_update=p.batch,
                 evaluate=p.evaluate, eval_episodes=EVAL_EPISODES,
                 env_name=config.env, requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="pqn", preset=preset)
