"""Stream Q(λ): Watkins Q(λ) learning from one transition at a time with ObGD.

Paper: Elsayed, Vasan, Mahmood, "Streaming Deep Reinforcement Learning Finally Works"
(arXiv 2410.14606, 2024); reference code mohmdelsayed/streaming-drl (`stream_q.py`,
`stream_q_minatar.py`, commit 407dca7). No replay buffer, no batch, no target network: each
learner takes one env step, computes one TD error and updates at once. rlx runs many
independent learners side by side (`--num-seeds N` = N learners in one compiled program,
one env each).

Per step (one `update`), for each learner:
  1. ε-greedy action, ε = max(1 − 0.99·t/(f·T), 0.01) for t = 1, 2, ...; the step is
     *non-greedy* when the random branch drew an action other than argmax Q(s,·);
  2. δ = r̃ + γ·(1 − terminated)·maxₐ′ Q(s′,a′) − Q(s,a) with current params, r̃ the scaled
     reward (see the truncation rule below);
  3. ObGD (rlx.optim.obgd, κ = 2) on ∇Q(s,a) with the trace reset *after* the update when
     the episode ended or the step was non-greedy (the reference code's Watkins cut; `--reset-before` gives the paper
     pseudocode's reset-before-accumulating timing for non-greedy steps as an ablation).
Observations: Welford normalisation (every emitted observation, reset ones included, updates
the stats first); rewards scaled by the running std of the discounted return; classic control
appends a time feature (−0.5 + steps/T, the reference's AddTimeInfo, after normalisation).
Network: sparse init (90% of each unit's inputs zero), LayerNorm without parameters,
LeakyReLU; classic control 2×32 MLP, MinAtar Conv(16,3×3) → 128.

Truncation rule (rlx default, a deliberate deviation): bootstrap through time-limit truncation
from info["final_observation"] (δ cut only on `terminated`); the trace and the reward trace
still restart at every episode end. The official code cuts at terminated OR truncated
(`--no-bootstrap-truncation`), but its classic-control envs run with a 10,000-step limit,
while gymnax CartPole-v1 keeps its 500-step limit: with the cut there, learners that reach
500 often collapse (measured in benchmarks/results/stream_x.md: 4-learner mean return over
5k-step windows in 60k steps, key sets 1 and 4, peaked at 375 / 350 with the cut and
reached 448 / 500 with bootstrapping). The time feature (as in the reference) is kept.

Reproduce (reference: CartPole reaches the cap in tens of thousands of steps; MinAtar figures
at 5M steps with ε decayed over 20%):
    python algorithms/stream_q.py --env CartPole-v1 --num-seeds 8 --total-timesteps 100000
    python algorithms/stream_q.py --env Breakout-MinAtar --num-seeds 8   # 5M steps per learner
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
from rlx.stream import (StreamRewardScaler, Welford, learner_input_init, learner_input_step, stream_dense,
                        stream_reward_scale, stream_reward_scaler_init, stream_torso)
from rlx.optim import ObGDState, obgd
from rlx.train import Train, episode_metrics


@dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    total_timesteps: int = static(500_000, "env steps per learner (one update per step)", within="[1, inf)")
    lr: float = field(1.0, "ObGD step size α", within="(0, inf)")
    gamma: float = field(0.99, "discount γ", within="[0, 1]")
    trace_lambda: float = field(0.8, "eligibility-trace decay λ", within="[0, 1]")
    kappa: float = field(2.0, "ObGD bound κ: every update moves the params by at most 1/κ in L1", within="(0, inf)")
    eps_start: float = field(1.0, "initial exploration ε", within="[0, 1]")
    eps_finish: float = field(0.01, "final exploration ε", within="[0, 1]")
    eps_decay: float = field(0.05, "fraction of total_timesteps over which ε decays linearly", within="(0, inf)")
    hidden: Tuple[int, ...] = static((32, 32), "hidden layer widths (MinAtar: the conv torso's dense layer has "
                                               "hidden[-1] units)", within="[1, inf)")
    sparsity: float = static(0.9, "fraction of each unit's inputs zeroed at init", within="[0, 1)")
    time_feature: bool = static(True, "append the time-in-episode feature (classic control; off for MinAtar)")
    reset_before: bool = static(False, "ablation: reset the trace before accumulating on non-greedy steps (paper pseudocode)")
    bootstrap_truncation: bool = static(True, "bootstrap through time-limit truncation from the final observation "
                                        "(false: cut the bootstrap at every episode end, the official code's rule)")
    overshooting_info: bool = static(False, "also report `overshoot`: the TD error recomputed after the update changed sign")

    def validate(self) -> None:
        check(self.eps_finish <= self.eps_start, f"need --eps-finish <= --eps-start (got {self.eps_finish} > {self.eps_start})")
        env = envs.make(self.env)
        check(env.action_kind == "discrete", f"stream Q needs discrete actions; {self.env} has {env.action_kind} "
              "actions (use algorithms/stream_ac.py)")
        rank = len(env.observation_space.shape)
        check(rank in (1, 3), f"stream Q takes flat or [H, W, C] observations; {self.env} has shape {env.observation_space.shape}")
        check(not (self.time_feature and rank != 1), f"--time-feature needs flat observations; {self.env} has "
              f"shape {env.observation_space.shape}: pass --no-time-feature")


def preset(env: str) -> dict:
    """Reference settings per env family (explicit flags win)."""
    if env.endswith("-MinAtar"):
        return {"hidden": (128,), "time_feature": False, "eps_decay": 0.2, "total_timesteps": 5_000_000}
    return {}


# ---------------------------------------------------------------------------------------------
# network


class QNetwork(nn.Module):
    num_actions: int
    hidden: Tuple[int, ...] = (32, 32)
    conv: bool = False
    sparsity: float = 0.9

    @nn.compact
    def __call__(self, x):
        x = stream_torso(self.hidden, self.conv, self.sparsity)(x)
        return stream_dense(self.num_actions, self.sparsity)(x)


def epsilon_greedy(key, q, epsilon):
    """(action, nongreedy): with probability ε a uniform action, else argmax q. The step is
    non-greedy only if the random branch drew an action other than the greedy one."""
    k_explore, k_random = jax.random.split(key)
    greedy = jnp.argmax(q).astype(jnp.int32)
    random_action = jax.random.randint(k_random, (), 0, q.shape[-1], dtype=jnp.int32)
    explore = jax.random.uniform(k_explore) < epsilon
    return jnp.where(explore, random_action, greedy), explore & (random_action != greedy)


class State(NamedTuple):
    params: Any
    opt: ObGDState
    obs_stats: Welford
    reward_scaler: StreamRewardScaler
    env_state: Any
    obs: jax.Array  # the learner's current input s (normalised, time feature appended)
    episode_steps: jax.Array  # steps taken in the current episode (time feature)
    step: jax.Array  # env steps taken so far (ε schedule)
    key: jax.Array


def make_train(config: Config) -> Train:
    env = envs.make(config.env)
    n_actions = env.action_space.n
    conv = len(env.observation_space.shape) == 3
    horizon = float(max(env.max_episode_steps, 1))
    network = QNetwork(n_actions, tuple(config.hidden), conv, config.sparsity)
    opt = obgd(config.lr, config.gamma, config.trace_lambda, config.kappa)

    def q_values(params, s):
        return network.apply(params, s)

    def init(key):
        k_net, k_env, key = jax.random.split(key, 3)
        obs, env_state = env.reset(k_env)
        stats, s = learner_input_init(obs, horizon, config.time_feature)
        params = network.init(k_net, s)
        return State(params, opt.init(params), stats, stream_reward_scaler_init(), env_state, s,
                     jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32), key)

    def update(state: State):
        key, k_explore, k_env = jax.random.split(state.key, 3)
        t = state.step + 1
        duration = config.eps_decay * config.total_timesteps
        slope = (config.eps_finish - config.eps_start) / duration
        epsilon = jnp.maximum(config.eps_start + slope * t.astype(jnp.float32), config.eps_finish)

        # 1. ε-greedy action; Q(s) and its VJP come from one forward pass
        q_s, q_vjp = jax.vjp(lambda p: q_values(p, state.obs), state.params)
        action, nongreedy = epsilon_greedy(k_explore, q_s, epsilon)

        # 2. one env step; reward scaling and observation normalisation
        next_obs, env_state, reward, terminated, truncated, info = env.step(k_env, state.env_state, action)
        done = terminated | truncated
        scaler, r = stream_reward_scale(state.reward_scaler, reward, done, config.gamma)
        stats, s_prime, s_next, episode_steps = learner_input_step(
            state.obs_stats, state.episode_steps, info["final_observation"], next_obs, done, horizon, config.time_feature)

        # 3. TD error with current params, ObGD on ∇Q(s, a), Watkins reset after the update
        cut = terminated if config.bootstrap_truncation else done  # the trace resets on `done` either way
        not_done = 1.0 - cut.astype(jnp.float32)
        q_next = q_values(state.params, s_prime)
        delta = r + config.gamma * not_done * jnp.max(q_next) - q_s[action]
        (grads,) = q_vjp(jax.nn.one_hot(action, n_actions, dtype=q_s.dtype))
        if config.reset_before:
            updates, opt_state = opt.update(grads, state.opt, delta=delta, reset=done, reset_before=nongreedy)
        else:
            updates, opt_state = opt.update(grads, state.opt, delta=delta, reset=done | nongreedy)
        params = optax.apply_updates(state.params, updates)

        metrics = episode_metrics(info, done)
        metrics.update({
            "td_error_abs": jnp.abs(delta),
            "step_size": opt_state.step_size,
            "bound_active": (opt_state.bound > 1.0).astype(jnp.float32),
            "epsilon": epsilon,
            "nongreedy": nongreedy.astype(jnp.float32),
        })
        if config.overshooting_info:
            delta_after = r + config.gamma * not_done * jnp.max(q_values(params, s_prime)) - q_values(params, state.obs)[action]
            metrics["overshoot"] = (delta * delta_after < 0).astype(jnp.float32)
        new_state = State(params, opt_state, stats, scaler, env_state, s_next, episode_steps, t, key)
        return new_state, {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}

    return Train(init=init, update=update, num_updates=int(config.total_timesteps), env_steps_per_update=1,
                 env_name=config.env, requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="stream_q", preset=preset)
