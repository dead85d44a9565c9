"""Offline RL data: one format (D4RL's keys), its checks, the Q-learning view, sampling, scores.

A dataset is a `Dataset` (six arrays with D4RL's names, row t = one env step) plus a metadata
dict (env, kind, behaviour return, reference min/max return, generating command, versions,
seed, checksum). rlx writes it as one `.npz` (`save` / `load`); `rlx.datasets.loaders` reads
D4RL HDF5 files and Minari datasets into the same pair and exports to Minari.

    ds, meta = datasets.load("hopper-medium.npz", env="brax/hopper")   # checked, exit-2 messages
    tr = datasets.qlearning_view(ds)          # D4RL's qlearning_dataset rule (timeouts dropped)
    mean, std = datasets.obs_stats(tr)        # TD3+BC's state normalisation (std + 1e-3)
    batch = datasets.sample(tr, key, 256)     # uniform rows, inside jit; `tr` unbatched under vmap
    datasets.normalized_score(ret, meta["ref_min_return"], meta["ref_max_return"])   # 0..100

Rules kept from D4RL (`d4rl/__init__.py`, `offline_env.py`): `terminals` marks true termination
only, `timeouts` the time limit; `qlearning_view` pairs row i with row i + 1 and skips every i
with `timeouts[i]` (its next row starts a new episode) and the last row.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import zipfile
from typing import NamedTuple, Optional, Tuple

import numpy as np

from rlx.config import ConfigError, check
from rlx.rundir import atomic_write

KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")
META_KEYS = ("env", "kind", "behaviour_return", "ref_min_return", "ref_max_return", "command", "versions", "seed")
ACTION_BOUND = 1.0 + 1e-5  # D4RL's actions come from tanh policies: [-1, 1] up to float error


class Dataset(NamedTuple):
    observations: np.ndarray  # (N, obs_dim) float32
    actions: np.ndarray  # (N, act_dim) float32 in [-1, 1]
    rewards: np.ndarray  # (N,) float32
    next_observations: np.ndarray  # (N, obs_dim) float32
    terminals: np.ndarray  # (N,) bool: true termination
    timeouts: np.ndarray  # (N,) bool: cut at the time limit


class Transitions(NamedTuple):
    """What learners sample: (s, a, r, s', d) with d = 1 only on true termination."""
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    done: np.ndarray  # float32


def from_arrays(arrays: dict, source: str = "dataset", *, env: Optional[str] = None, obs_dim: Optional[int] = None,
                act_dim: Optional[int] = None) -> Dataset:
    """Check `arrays` (a dict with D4RL's keys) and return a float32/bool `Dataset`.

    Raises ConfigError naming `source` and the key on: missing or misnamed keys, wrong ranks,
    lengths that differ, observation/action sizes other than `obs_dim`/`act_dim`, NaN/inf,
    actions outside [-1, 1]. `next_observations` may be absent (D4RL v0): it is then row t + 1."""
    arrays = dict(arrays)
    if "next_observations" not in arrays and "observations" in arrays:
        obs = np.asarray(arrays["observations"])
        arrays["next_observations"] = np.concatenate([obs[1:], obs[-1:]]) if len(obs) else obs
    missing = [k for k in KEYS if k not in arrays]
    if missing:
        hints = [f"{k} (found {m[0]!r}?)" if (m := difflib.get_close_matches(k, list(arrays), 1, 0.6)) else k for k in missing]
        raise ConfigError(f"{source}: missing key(s) {', '.join(hints)}; a dataset needs {', '.join(KEYS)}")
    out = {}
    for k in KEYS:
        a = np.asarray(arrays[k])
        want_rank = 2 if k in ("observations", "actions", "next_observations") else 1
        if k in ("rewards", "terminals", "timeouts") and a.ndim == 2 and a.shape[1] == 1:
            a = a[:, 0]
        check(a.ndim == want_rank, f"{source}: {k!r} has shape {a.shape}; expected {'(N, dim)' if want_rank == 2 else '(N,)'}")
        out[k] = a.astype(bool) if k in ("terminals", "timeouts") else a.astype(np.float32)
    n = {k: len(v) for k, v in out.items()}
    check(len(set(n.values())) == 1, f"{source}: the arrays have different lengths ({', '.join(f'{k} {v}' for k, v in n.items())})")
    check(n["observations"] > 0, f"{source}: the dataset is empty")
    check(out["next_observations"].shape[1] == out["observations"].shape[1],
          f"{source}: next_observations have {out['next_observations'].shape[1]} features, observations {out['observations'].shape[1]}")
    where = f" (the env {env} has {{}})" if env else " (expected {})"
    if obs_dim is not None:
        check(out["observations"].shape[1] == obs_dim, f"{source}: observations have {out['observations'].shape[1]} features" + where.format(obs_dim))
    if act_dim is not None:
        check(out["actions"].shape[1] == act_dim, f"{source}: actions have {out['actions'].shape[1]} dimensions" + where.format(act_dim))
    for k in ("observations", "actions", "rewards", "next_observations"):
        bad = ~np.isfinite(out[k])
        if bad.any():
            row = int(np.argwhere(bad)[0][0])
            raise ConfigError(f"{source}: {k!r} holds {int(bad.sum())} NaN/inf value(s), first at row {row}")
    amax = float(np.abs(out["actions"]).max())
    if amax > ACTION_BOUND:
        row = int(np.argwhere(np.abs(out["actions"]) > ACTION_BOUND)[0][0])
        raise ConfigError(f"{source}: actions must lie in [-1, 1] (largest |action| {amax:.4g}, first at row {row}); "
                          "rescale them to the env's action bounds")
    return Dataset(**out)


def checksum(ds: Dataset) -> str:
    """sha256 over the six arrays (dtype, shape, bytes) in KEYS order: equal data, equal checksum."""
    h = hashlib.sha256()
    for k in KEYS:
        a = np.ascontiguousarray(getattr(ds, k))
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def save(path: str, ds: Dataset, meta: dict) -> dict:
    """Write `ds` and `meta` (plus its checksum) to one .npz, atomically. Returns the metadata written."""
    meta = {**meta, "checksum": checksum(ds), "size": int(len(ds.rewards))}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, lambda f: np.savez(f, metadata=np.asarray(json.dumps(meta, default=str)),
                                          **{k: getattr(ds, k) for k in KEYS}))
    return meta


def load(path: str, *, env: Optional[str] = None, obs_dim: Optional[int] = None,
         act_dim: Optional[int] = None) -> Tuple[Dataset, dict]:
    """Read a dataset file: rlx `.npz`, or D4RL `.hdf5`/`.h5` (needs h5py). Checks everything
    `from_arrays` checks, the checksum of rlx files, and that the data was made for `env`."""
    check(os.path.exists(path), f"dataset file {path!r} does not exist")
    if path.endswith((".hdf5", ".h5")):
        from .loaders import load_d4rl_hdf5

        arrays, meta = load_d4rl_hdf5(path)
    else:
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "metadata"}
                meta = json.loads(str(z["metadata"])) if "metadata" in z.files else {}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
            raise ConfigError(f"{path}: not a readable rlx dataset (.npz) file ({e})") from None
    ds = from_arrays(arrays, path, env=env, obs_dim=obs_dim, act_dim=act_dim)
    if meta.get("checksum"):
        check(meta["checksum"] == checksum(ds), f"{path}: the data does not match its checksum (file changed or damaged); regenerate it")
    if env is not None and meta.get("env"):
        check(meta["env"] == env, f"{path} was made for {meta['env']!r}, not {env!r}; pass --env {meta['env']} or another dataset")
    return ds, meta


def qlearning_view(ds: Dataset) -> Transitions:
    """D4RL's `qlearning_dataset`: row i paired with row i + 1 as next observation, i = 0 .. N - 2,
    skipping every i with `timeouts[i]`; terminal rows kept with done = 1 (their next row is a
    reset, masked by 1 - done)."""
    keep = np.nonzero(~ds.timeouts[:-1])[0]
    return Transitions(ds.observations[keep], ds.actions[keep], ds.rewards[keep], ds.observations[keep + 1],
                       ds.terminals[keep].astype(np.float32))


def episode_returns(ds: Dataset) -> np.ndarray:
    """Undiscounted returns of the episodes that end in the data (terminal or timeout row)."""
    ends = np.nonzero(ds.terminals | ds.timeouts)[0]
    csum = np.concatenate([[0.0], np.cumsum(ds.rewards, dtype=np.float64)])
    starts = np.concatenate([[0], ends[:-1] + 1])
    return csum[ends + 1] - csum[starts]


def obs_stats(tr: Transitions, eps: float = 1e-3) -> Tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and std + eps of the observations (TD3+BC normalises states with these)."""
    x = np.asarray(tr.obs, np.float64)
    return x.mean(0).astype(np.float32), (x.std(0) + eps).astype(np.float32)


def normalize_obs(tr: Transitions, mean, std) -> Transitions:
    return tr._replace(obs=(tr.obs - mean) / std, next_obs=(tr.next_obs - mean) / std)


def sample(tr: Transitions, key, batch_size: int) -> Transitions:
    """`batch_size` rows drawn uniformly with replacement; jit-able. Under `jax.vmap` over seeds,
    pass `tr` unbatched (in_axes None / closed over) so every seed reads the same single copy."""
    import jax

    n = tr.reward.shape[0]
    idx = jax.random.randint(key, (batch_size,), 0, n)
    return jax.tree.map(lambda x: x[idx], tr)


def normalized_score(ret, ref_min: float, ref_max: float):
    """D4RL's normalised score: 100 (R - ref_min) / (ref_max - ref_min)."""
    check(ref_max != ref_min, f"reference returns must differ (min {ref_min}, max {ref_max})")
    return 100.0 * (np.asarray(ret, np.float64) - ref_min) / (ref_max - ref_min)


def describe(ds: Dataset, meta: dict) -> dict:
    """Sizes, episodes and return statistics (what `python -m rlx.datasets info FILE` prints)."""
    rets = episode_returns(ds)
    out = {"size": int(len(ds.rewards)), "obs_dim": int(ds.observations.shape[1]), "act_dim": int(ds.actions.shape[1]),
           "episodes": int(len(rets)), "terminals": int(ds.terminals.sum()), "timeouts": int(ds.timeouts.sum())}
    if len(rets):
        out.update(return_mean=float(rets.mean()), return_std=float(rets.std()), return_min=float(rets.min()),
                   return_max=float(rets.max()))
        if meta.get("ref_min_return") is not None and meta.get("ref_max_return") is not None:
            out["normalized_score_mean"] = float(normalized_score(rets, meta["ref_min_return"], meta["ref_max_return"]).mean())
    out["metadata"] = {k: v for k, v in meta.items()}
    return out
