"""D4RL-style datasets on brax, made from behaviour policies (issue: offline foundation).

A *policy file* (`policies/<env>.npz` beside this module, or any path) holds several Gaussian MLP
policies of one training run — `expert` (the final one), `medium` (about a third of the expert's
return) and `replay_000 ...` (the run's snapshots up to medium) — as plain arrays, with their
observation normalisation and a JSON header (env, brax backend, activation, each policy's env
steps and return, the reference min/max returns, the command that trained them). Nothing here
imports an algorithm file: `benchmarks/behaviour_agents.py` exports a PPO run into this format.

Kinds (D4RL's recipe, `../shared/specs/offline.md` section 2, with actions *sampled* from the
policy and clipped to [-1, 1] as the env applies them):
- `random`: uniform actions, 1M rows; `medium`, `expert`: 1M rows of that policy;
- `medium-replay`: rollouts of every snapshot up to medium, equal shares, D4RL's sizes;
- `medium-expert`: medium followed by expert (2M rows).
Rows come from `num_envs` envs run side by side, each env's stream stored whole, one after the
other; 1000-step episodes with `timeouts` at the limit, `terminals` only on termination, and the
cut at the end of each stream marked as a timeout (so `qlearning_view` never pairs two streams).
"""
from __future__ import annotations

import json
import os
import sys
import time
from typing import Dict, NamedTuple, Optional, Tuple

import numpy as np

from rlx.config import ConfigError, check
from rlx.report import versions
from rlx.rundir import atomic_write

from . import Dataset, checksum, episode_returns, from_arrays

POLICY_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "policies")
KINDS = ("random", "medium", "medium-replay", "expert", "medium-expert")
SIZE = 1_000_000
# D4RL's medium-replay sizes (transitions in the replay buffer up to medium; spec section 2, unverified)
REPLAY_SIZE = {"brax/hopper": 402_000, "brax/walker2d": 302_000, "brax/halfcheetah": 202_000, "brax/ant": 302_000}
STREAM_STEPS = 2000  # steps per env stream: at least one whole 1000-step episode per stream


class Policy(NamedTuple):
    """a = clip(mean(s̃) + exp(log_std) ε, -1, 1), s̃ = (s - obs_mean) / sqrt(obs_var + 1e-8),
    mean = MLP(s̃) with `activation` after every hidden layer (PPO's actor)."""
    kernels: tuple
    biases: tuple
    log_std: np.ndarray
    obs_mean: np.ndarray
    obs_var: np.ndarray


def policy_mean(policy: Policy, obs, activation: str = "tanh"):
    import jax.numpy as jnp

    from rlx.networks import activation as act_fn

    f = act_fn(activation)
    x = (obs - policy.obs_mean) / jnp.sqrt(policy.obs_var + 1e-8)
    for i, (w, b) in enumerate(zip(policy.kernels, policy.biases)):
        x = x @ w + b
        if i < len(policy.kernels) - 1:
            x = f(x)
    return x


def save_policies(path: str, policies: Dict[str, Policy], header: dict) -> None:
    arrays = {}
    for name, p in policies.items():
        for i, (w, b) in enumerate(zip(p.kernels, p.biases)):
            arrays[f"{name}/kernel_{i}"], arrays[f"{name}/bias_{i}"] = np.asarray(w, np.float32), np.asarray(b, np.float32)
        for k in ("log_std", "obs_mean", "obs_var"):
            arrays[f"{name}/{k}"] = np.asarray(getattr(p, k), np.float32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: np.savez_compressed(f, header=np.asarray(json.dumps(header)), **arrays))


def load_policies(path: str) -> Tuple[Dict[str, Policy], dict]:
    check(os.path.exists(path), f"policy file {path!r} does not exist")
    with np.load(path) as z:
        header = json.loads(str(z["header"]))
        out = {}
        for name in header["policies"]:
            n = sum(1 for k in z.files if k.startswith(f"{name}/kernel_"))
            out[name] = Policy(tuple(z[f"{name}/kernel_{i}"] for i in range(n)), tuple(z[f"{name}/bias_{i}"] for i in range(n)),
                               z[f"{name}/log_std"], z[f"{name}/obs_mean"], z[f"{name}/obs_var"])
    return out, header


def policy_file(env: str) -> str:
    return os.path.join(POLICY_DIR, env.replace("brax/", "") + ".npz")


def available_envs() -> list:
    if not os.path.isdir(POLICY_DIR):
        return []
    return sorted(f"brax/{f[:-4]}" for f in os.listdir(POLICY_DIR) if f.endswith(".npz"))


def _make_env(env: str, backend: str):
    import rlx.envs as envs

    return envs.make(env, backend=backend, autoreset="fresh")


_PROGRAMS: dict = {}  # compiled rollout/evaluation programs, one per (env, shape, policy kind): policies are arguments


def _sample_action(policy: Optional[Policy], activation: str, obs, key, act_dim: int):
    import jax
    import jax.numpy as jnp

    if policy is None:
        return jax.random.uniform(key, (obs.shape[0], act_dim), minval=-1.0, maxval=1.0)
    mean = policy_mean(policy, obs, activation)
    return jnp.clip(mean + jnp.exp(policy.log_std) * jax.random.normal(key, mean.shape), -1.0, 1.0)


def _chunk_program(env, activation: str, num_envs: int):
    import jax

    key = ("chunk", id(env), activation, num_envs)
    if key not in _PROGRAMS:
        act_dim = env.action_space.shape[0]

        def step(policy, carry, k):
            obs, state = carry
            k_a, k_s = jax.random.split(k)
            action = _sample_action(policy, activation, obs, k_a, act_dim)
            nxt, state, reward, term, trunc, info = jax.vmap(env.step)(jax.random.split(k_s, num_envs), state, action)
            row = dict(observations=obs, actions=action, rewards=reward, next_observations=info["final_observation"],
                       terminals=term, timeouts=trunc)
            return (nxt, state), row

        _PROGRAMS[key] = jax.jit(lambda policy, carry, ks: jax.lax.scan(lambda c, k: step(policy, c, k), carry, ks))
    return _PROGRAMS[key]


def rollout(env, policy: Optional[Policy], activation: str, key, num_rows: int, progress: Optional[str] = None) -> dict:
    """`num_rows` rows of D4RL arrays from envs running `policy` (None: uniform random actions)."""
    import jax

    num_envs = max(1, -(-num_rows // STREAM_STEPS))
    steps = -(-num_rows // num_envs)
    k_reset, k_run = jax.random.split(key)
    carry = jax.vmap(env.reset)(jax.random.split(k_reset, num_envs))
    run_chunk = _chunk_program(env, activation, num_envs)
    parts, done, t0 = [], 0, time.perf_counter()
    keys = jax.random.split(k_run, steps)
    while done < steps:
        n = min(100, steps - done)
        carry, rows = run_chunk(policy, carry, keys[done:done + n])
        parts.append(jax.device_get(rows))
        done += n
        if progress:
            rate = done * num_envs / max(time.perf_counter() - t0, 1e-9)
            print(f"\r{progress}: {done * num_envs:,}/{steps * num_envs:,} rows ({rate:,.0f} rows/s)", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    # [steps, envs, ...] -> env streams one after the other; the end of each stream is cut
    arrays = {k: np.concatenate([p[k] for p in parts]).swapaxes(0, 1).reshape((num_envs * steps,) + parts[0][k].shape[2:])
              for k in parts[0]}
    cut = np.zeros((num_envs, steps), bool)
    cut[:, -1] = True
    arrays["timeouts"] = arrays["timeouts"] | (cut.reshape(-1) & ~arrays["terminals"])
    out = {k: v[:num_rows] for k, v in arrays.items()}
    out["timeouts"][-1] |= not out["terminals"][-1]
    return out


def mean_return(env, policy: Optional[Policy], activation: str, key, episodes: int = 100) -> float:
    """Mean undiscounted return of `episodes` whole episodes (one per env) with sampled actions."""
    import jax

    from rlx.evaluate import evaluate_episodes

    pkey = ("eval", id(env), activation, episodes)
    if pkey not in _PROGRAMS:
        act_dim = env.action_space.shape[0]
        _PROGRAMS[pkey] = jax.jit(lambda p, k: evaluate_episodes(
            env, lambda obs, kk: _sample_action(p, activation, obs, kk, act_dim), k, episodes))
    return float(_PROGRAMS[pkey](policy, key))


def generate(env_name: str, kind: str, *, seed: int = 0, size: Optional[int] = None, policies_path: Optional[str] = None,
             progress: bool = True) -> Tuple[Dataset, dict]:
    """Make the `kind` dataset for `env_name` from its policy file, deterministically from `seed`."""
    import jax

    check(kind in KINDS, f"unknown dataset kind {kind!r}; choose one of {', '.join(KINDS)}")
    path = policies_path or policy_file(env_name)
    check(os.path.exists(path), f"no behaviour policies for {env_name!r} ({path} is missing); "
                                f"datasets can be made for: {', '.join(available_envs()) or 'none yet'}")
    policies, header = load_policies(path)
    check(header["env"] == env_name, f"{path} holds policies for {header['env']!r}, not {env_name!r}")
    env = _make_env(env_name, header["backend"])
    act = header["activation"]
    key = jax.random.fold_in(jax.random.PRNGKey(seed), KINDS.index(kind))
    label = f"{env_name}-{kind}" if progress else None
    t0 = time.perf_counter()
    if kind == "random":
        arrays = rollout(env, None, act, key, size or SIZE, label)
    elif kind in ("medium", "expert"):
        arrays = rollout(env, policies[kind], act, key, size or SIZE, label)
    elif kind == "medium-replay":
        names = sorted(n for n in policies if n.startswith("replay_"))
        total = size or REPLAY_SIZE.get(env_name, 300_000)
        shares = [total // len(names) + (i < total % len(names)) for i in range(len(names))]
        parts = [rollout(env, policies[n], act, jax.random.fold_in(key, i), s, label and f"{label} {n}")
                 for i, (n, s) in enumerate(zip(names, shares))]
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    else:  # medium-expert: D4RL stitches medium and expert (each half of the size)
        half = (size or 2 * SIZE) // 2
        parts = [rollout(env, policies[n], act, jax.random.fold_in(key, i), half, label and f"{label} {n}")
                 for i, n in enumerate(("medium", "expert"))]
        arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    ds = from_arrays(arrays, f"generated {env_name}-{kind}", env=env_name)
    rets = episode_returns(ds)
    meta = {"env": env_name, "kind": kind, "seed": int(seed), "env_backend": header["backend"],
            "behaviour_return": float(rets.mean()) if len(rets) else None,
            "ref_min_return": header["ref_min_return"], "ref_max_return": header["ref_max_return"],
            "policies": os.path.basename(path), "policy_command": header.get("command"),
            "command": f"python -m rlx.datasets generate --env {env_name} --kind {kind} --seed {seed}" + (f" --size {size}" if size else ""),
            "versions": versions(), "generation_s": round(time.perf_counter() - t0, 1)}
    meta["checksum"] = checksum(ds)
    return ds, meta


def cache_dir() -> str:
    return os.environ.get("RLX_DATASETS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "rlx", "datasets")


def resolve(name: str, *, seed: int = 0, progress: bool = True) -> str:
    """A dataset name (`brax/hopper-medium`) or a file path -> a file path; named datasets are
    generated on first use into the cache (`RLX_DATASETS_DIR`, default ~/.cache/rlx/datasets)."""
    if os.path.exists(name) or name.endswith((".npz", ".hdf5", ".h5")):
        return name
    env, kind = _split(name)
    known = [f"{e}-{k}" for e in available_envs() for k in KINDS]
    if kind not in KINDS or env not in available_envs():
        raise ConfigError(f"unknown dataset {name!r}: give a file (.npz, .hdf5) or one of {', '.join(known) or '(no policy files yet)'}")
    path = os.path.join(cache_dir(), f"{env.replace('/', '_')}-{kind}-seed{seed}.npz")
    if not os.path.exists(path):
        from . import save

        ds, meta = generate(env, kind, seed=seed, progress=progress)
        save(path, ds, meta)
    return path


def _split(name: str) -> Tuple[str, str]:
    """'brax/hopper-medium-replay' -> ('brax/hopper', 'medium-replay'); the longest kind that ends the name."""
    for kind in sorted(KINDS, key=len, reverse=True):
        if name.endswith("-" + kind):
            return name[: -len(kind) - 1], kind
    return name, ""
