"""The plan of a run, made before anything compiles: the run options checked, the runs (seed x sweep
setting) and their PRNG keys (run i of `num_seeds` uses `jax.random.PRNGKey(seed + i)`), the devices
they spread over, and the chunks of updates between which the host logs, evaluates and checkpoints."""
from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import devices as dv
from . import report
from .config import check, validate


@dataclasses.dataclass
class Plan:
    """Everything decided before compiling."""
    runs: List[dict]  # per run: seed and swept values
    n_pad: int  # copies of the last run that fill the devices evenly
    devices: list
    keys: Any  # PRNG keys, (runs + padding, 2)
    hp: Dict[str, Any]  # swept values, each (runs + padding,)
    num_updates: int
    steps_per_update: int
    chunks: List[int]  # updates per chunk
    log_every: int
    eval_every: int
    eval_episodes: int
    has_eval: bool
    ckpt_every_chunks: Optional[int]  # None: every 60 s

    @property
    def n_runs(self) -> int:
        return len(self.runs)

    @property
    def total_steps(self) -> int:
        return self.num_updates * self.steps_per_update

    @property
    def bounds(self) -> np.ndarray:  # updates done after chunk i = bounds[i + 1]
        return np.cumsum([0] + self.chunks)


def plan_chunks(num_updates: int, target: int) -> List[int]:
    """Split `num_updates` into chunks of one size (at most one smaller remainder chunk, which
    costs a second compile). Prefers a divisor of num_updates close to `target`."""
    target = max(1, min(int(target), num_updates))
    best = None
    for k in range(max(1, target // 2), min(num_updates, 2 * target) + 1):
        if num_updates % k == 0 and (best is None or abs(k - target) < abs(best - target)):
            best = k
    if best is not None:
        return [best] * (num_updates // best)
    chunks = [target] * (num_updates // target)
    if num_updates % target:
        chunks.append(num_updates % target)
    return chunks


def make_plan(cfg_cls, make_train, config, nm, *, num_seeds, seed, sweep, log, out, log_every, eval_every, eval_episodes,
          checkpoint_every, resume):
    flag = lambda k: nm[k]  # noqa: E731
    check(num_seeds >= 1, f"{flag('num_seeds')} must be >= 1 (got {num_seeds})")
    check(log_every is None or log_every >= 1, f"{flag('log_every')} must be >= 1 env step (got {log_every})")
    check(eval_every >= 0, f"{flag('eval_every')} must be >= 0 (got {eval_every}; 0 evaluates at the end only)")
    check(eval_episodes is None or eval_episodes >= 0,
          f"{flag('eval_episodes')} must be >= 0 (got {eval_episodes}; 0 turns evaluation off)")
    check(checkpoint_every is None or checkpoint_every >= 1,
          f"{flag('checkpoint_every')} must be >= 1 env step (got {checkpoint_every}; leave it out to checkpoint "
          f"every 60 s)")
    check(not resume or out is not None, f"{nm['resume']} needs {flag('out')}")
    report.check_loggers(log, out, flag("log"))
    validate(config)
    combos = [dict(zip(sweep, vals)) for vals in itertools.product(*sweep.values())] if sweep else [{}]
    for combo in combos:
        if combo:
            validate(dataclasses.replace(config, **combo))

    runs = [{"seed": seed + s, **combo} for combo in combos for s in range(num_seeds)]
    # one device is enough for one run; more runs spread over up to every local device, padded with copies
    # of the last run to fill them evenly (on a CPU, rlx.devices.use_all_cpu_cores gives one device per core)
    devices = jax.local_devices()[:len(runs)]
    n_pad = (-len(runs)) % len(devices)
    keys = jax.vmap(jax.random.PRNGKey)(jnp.asarray([r["seed"] for r in runs] + [runs[-1]["seed"]] * n_pad))
    hp = {}
    for k in sweep:  # swept fields keep their Python type's dtype
        typ = type(getattr(config, k))
        hp[k] = jnp.asarray([r[k] for r in runs] + [runs[-1][k]] * n_pad,
                            jnp.float32 if typ is float else jnp.int32 if typ is int else bool)

    base = make_train(config)
    U, spu = int(base.num_updates), int(base.env_steps_per_update)
    check(U >= 1, f"total_timesteps={base.requested_steps} is less than one update ({spu} env steps); "
                  f"raise --total-timesteps")
    eval_episodes = int(base.eval_episodes) if eval_episodes is None else eval_episodes
    log_every = max(spu, U * spu // 50) if log_every is None else log_every
    chunks = plan_chunks(U, max(1, round(log_every / spu)))
    ckpt_every = max(1, round(checkpoint_every / (chunks[0] * spu))) if checkpoint_every else None
    plan = Plan(runs, n_pad, devices, keys, hp, U, spu, chunks, int(log_every), int(eval_every), int(eval_episodes),
                base.evaluate is not None and eval_episodes > 0, ckpt_every)
    return plan, base, combos


def steps_note(plan: Plan, base) -> Optional[str]:
    req = base.requested_steps
    if req is None or req == plan.total_steps:
        return None
    return (f"--total-timesteps {req:,} rounded down to {plan.total_steps:,}: a whole number of updates "
            f"({plan.num_updates:,}) of {plan.steps_per_update:,} env steps each")


def header(label, plan, base, num_seeds, n_combos, memory) -> str:
    msg = (f"{label} {plan.n_runs} run(s) ({num_seeds} seed(s) x {n_combos} setting(s)) on {dv.device_name()} "
           f"({len(plan.devices)} in use); {plan.total_steps:,} env steps per run = {plan.num_updates:,} updates x "
           f"{plan.steps_per_update:,} in {len(plan.chunks)} chunks")
    note = steps_note(plan, base)
    if note:
        msg += f" ({note})"
    if memory.get("estimate_bytes"):
        msg += (f"; memory {report.fmt_bytes(memory['estimate_bytes'])} of "
                f"{report.fmt_bytes(memory['available_bytes'])} available")
    return msg


