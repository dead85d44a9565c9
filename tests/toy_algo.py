"""A tiny algorithm for testing the runner: random actions on CartPole and a scalar
"parameter" w that moves towards the mean reward with step size lr. It can be told to
produce a NaN at a given update."""
import time
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

import rlx.envs as envs
from rlx.config import check, field, static
from rlx.train import Train, episode_metrics


@dataclass(frozen=True)
class Config:
    env: str = "CartPole-v1"
    total_timesteps: int = static(2048, "env steps")
    num_envs: int = static(4, "envs")
    num_steps: int = static(8, "steps per update")
    lr: float = field(0.1, "step size")
    gamma: float = field(0.99, "discount")
    nan_at_update: int = static(-1, "make the loss NaN at this update")
    slow: float = static(0.0, "host-side sleep per update in seconds (to kill a run mid-way in tests)")

    def validate(self):
        check(0 <= self.gamma <= 1, f"--gamma must be in [0, 1] (got {self.gamma})")
        check(self.lr > 0, "--lr must be > 0")
        check(self.num_envs >= 1, "--num-envs must be >= 1")
        env = envs.make(self.env)
        check(env.action_kind == "discrete", f"toy needs discrete actions; {self.env} has {env.action_kind} actions")


class State(NamedTuple):
    w: jax.Array
    env_state: object
    key: jax.Array
    n: jax.Array


def make_train(config):
    env = envs.make(config.env)

    def init(key):
        k_env, key = jax.random.split(key)
        _, es = jax.vmap(env.reset)(jax.random.split(k_env, config.num_envs))
        return State(jnp.zeros(()), es, key, jnp.zeros((), jnp.int32))

    def step(s, _):
        key, k_a, k_s = jax.random.split(s.key, 3)
        a = jax.random.randint(k_a, (config.num_envs,), 0, env.action_space.n)
        _, es, r, term, trunc, info = jax.vmap(env.step)(jax.random.split(k_s, config.num_envs), s.env_state, a)
        return s._replace(env_state=es, key=key), (r * a, episode_metrics(info, term | trunc))

    def update(s):
        s, (r, ep) = jax.lax.scan(step, s, None, config.num_steps)
        w = s.w + config.lr * (r.mean() * config.gamma - s.w)
        n = s.n + 1
        if config.slow > 0:
            jax.debug.callback(lambda: time.sleep(config.slow))
        loss = jnp.where(n == config.nan_at_update, jnp.nan, (w - 1.0) ** 2)
        return s._replace(w=w, n=n), {"loss": loss, **{k: v.sum() for k, v in ep.items()}}

    def evaluate(s, key, num_episodes):
        return s.w * 10.0

    return Train(init, update, config.total_timesteps // (config.num_envs * config.num_steps),
                 config.num_envs * config.num_steps, evaluate, env_name=config.env,
                 requested_steps=config.total_timesteps)


if __name__ == "__main__":
    from rlx.cli import main

    main(Config, make_train, name="toy")
