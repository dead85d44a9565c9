"""The contract between an algorithm and the runner.

`make_train(config)` returns a `Train`:
- `init(key) -> state`: the whole training state of one seed (params, optimiser state,
  normaliser stats, env states, last observations, rng key, counters) as one pytree;
- `update(state) -> (state, metrics)`: one iteration (a rollout + epochs, one env step + one
  learner update, or one gradient step). `metrics` is a flat dict of float32 scalars and
  must contain `episode_return_sum` and `episode_count` (returns and number of the episodes
  that finished during this update; both 0 when none did) and `episode_length_sum`;
- `evaluate(state, key, num_episodes) -> scalar` (optional): mean first-episode return of
  `num_episodes` envs run with the current greedy or deterministic policy (`num_episodes` is a
  Python int: the runner's `--eval-episodes`, else the algorithm's `eval_episodes`);
- `num_updates` and `env_steps_per_update` (per seed; for offline methods the gradient steps);
- `env_name` (the env id, for labels and summaries) and `requested_steps` (the `total_timesteps`
  the user asked for, so the runner can say when `num_updates * env_steps_per_update` rounds it
  down to a whole number of updates). The runner reads nothing else of the Config.

`train.train(key)` runs init + `lax.scan(update)` and is what `jax.jit(jax.vmap(train.train))`
compiles for a plain multi-seed run outside the runner.

Sweeps: inside `make_train` any non-static Config `field()` may be a traced JAX scalar (the runner
re-runs `make_train` under `jax.vmap` with the swept values), so use such fields only in
arithmetic or `jnp.where`/`lax` control flow, and mark a field `static` when it sets a shape or a
Python branch; the full rule is the sweep contract in `rlx/config.py`'s docstring, and
tests/test_sweep_contract.py sweeps a float field of every algorithm.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp


@dataclass(frozen=True)
class Train:
    init: Callable[[jax.Array], Any]
    update: Callable[[Any], Any]
    num_updates: int
    env_steps_per_update: int
    evaluate: Optional[Callable[[Any, jax.Array, int], jax.Array]] = None
    eval_episodes: int = 16  # the algorithm's default number of evaluation episodes
    env_name: str = ""  # the env id (labels, summary.json)
    requested_steps: Optional[int] = None  # total_timesteps as asked; None: num_updates * env_steps_per_update

    def train(self, key):
        state = self.init(key)
        return jax.lax.scan(lambda s, _: self.update(s), state, None, self.num_updates)


def episode_metrics(info, done, keep_env_axes: bool = False) -> dict:
    """Sum/count of finished episodes from the env info of a rollout (any shape).

    keep_env_axes=True returns the masked per-env values instead of their sums, for use inside a
    rollout step: stack them through the scan and sum once after it. A reduction inside the step
    costs extra kernels at every env step on a GPU (XLA copies the step's env-state outputs back
    into the loop carry when they come from a fusion that also reduces; seen with PPO on CartPole
    on an H100, benchmarks/results/ppo_cartpole.md)."""
    d = jnp.asarray(done, jnp.float32)
    out = {
        "episode_return_sum": info["episode_return"] * d,
        "episode_length_sum": (info["episode_length"] * d).astype(jnp.float32),
        "episode_count": d,
    }
    return out if keep_env_axes else {k: jnp.sum(v) for k, v in out.items()}
