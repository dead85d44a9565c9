"""Datasets users already have: D4RL HDF5 files (h5py) and Minari datasets (the `minari`
package, in its local root `MINARI_DATASETS_PATH` or `~/.minari/datasets`); and export of an rlx
dataset to Minari so other libraries read ours. Both packages are optional
(`pip install -e ".[offline]"`); the error says so when one is missing.
"""
from __future__ import annotations

import warnings
from typing import Optional, Tuple

import numpy as np

from rlx.config import ConfigError, check

from . import KEYS, Dataset, from_arrays


def _need(module: str):
    try:
        return __import__(module)
    except ImportError:
        raise ConfigError(f"reading this dataset needs the {module!r} package: pip install -e \".[offline]\"") from None


def load_d4rl_hdf5(path: str) -> Tuple[dict, dict]:
    """The top-level D4RL arrays of an HDF5 file and its `metadata/*` entries (as a dict)."""
    h5py = _need("h5py")
    try:
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
            meta = {}
            if "metadata" in f and isinstance(f["metadata"], h5py.Group):
                for k, v in f["metadata"].items():
                    if isinstance(v, h5py.Dataset) and v.shape == ():
                        x = v[()]
                        meta[k] = x.decode() if isinstance(x, bytes) else (x.item() if hasattr(x, "item") else x)
    except OSError as e:
        raise ConfigError(f"{path}: not a readable HDF5 file ({e})") from None
    meta.setdefault("source", "d4rl-hdf5")
    return arrays, meta


def _episodes(ds: Dataset):
    """Split rows into episodes at terminal/timeout rows; a trailing cut episode is returned too."""
    ends = list(np.nonzero(ds.terminals | ds.timeouts)[0])
    n = len(ds.rewards)
    if not ends or ends[-1] != n - 1:
        ends.append(n - 1)
    start = 0
    for e in ends:
        yield start, e + 1
        start = e + 1


def to_minari(ds: Dataset, meta: dict, dataset_id: str, description: Optional[str] = None):
    """Write `ds` as a Minari dataset `dataset_id` (e.g. "rlx/hopper/medium-v0") in the local
    Minari root. Episodes follow Minari's standard: T + 1 observations (the last one is the
    stored next observation), T actions/rewards/terminations/truncations. An episode the data
    cuts before its end is written as truncated."""
    minari = _need("minari")
    from gymnasium import spaces
    from minari.data_collector import EpisodeBuffer

    obs_dim, act_dim = ds.observations.shape[1], ds.actions.shape[1]
    buffers = []
    for i, (a, b) in enumerate(_episodes(ds)):
        trunc = ds.timeouts[a:b].copy()
        trunc[-1] = trunc[-1] or not ds.terminals[b - 1]
        buffers.append(EpisodeBuffer(
            id=i, observations=np.concatenate([ds.observations[a:b], ds.next_observations[b - 1:b]]),
            actions=ds.actions[a:b], rewards=list(ds.rewards[a:b]), terminations=list(ds.terminals[a:b]),
            truncations=list(trunc)))
    with warnings.catch_warnings():  # minari asks for links, e-mails and a gymnasium env spec we do not have
        warnings.simplefilter("ignore", UserWarning)
        d = minari.create_dataset_from_buffers(
            dataset_id, buffers, algorithm_name=str(meta.get("kind", "rlx")), author="rlx",
            observation_space=spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32),
            action_space=spaces.Box(-1.0, 1.0, (act_dim,), np.float32),
            description=description or f"rlx dataset {meta.get('env', '')} {meta.get('kind', '')}".strip())
    # minari records reference scores only for a gymnasium eval env; brax envs are not, so add them here
    if meta.get("ref_min_return") is not None and meta.get("ref_max_return") is not None:
        d.storage.update_metadata({"ref_min_score": float(meta["ref_min_return"]), "ref_max_score": float(meta["ref_max_return"])})
    return d


def load_minari(dataset_id: str) -> Tuple[dict, dict]:
    """A Minari dataset present in the local root, flattened to D4RL's arrays:
    obs = o[:-1], next_obs = o[1:], terminals = terminations, timeouts = truncations."""
    minari = _need("minari")
    local = minari.list_local_datasets()
    if dataset_id not in local:
        raise ConfigError(f"no Minari dataset {dataset_id!r} in the local Minari root (MINARI_DATASETS_PATH); "
                          f"local datasets: {', '.join(sorted(local)) or 'none'}")
    d = minari.load_dataset(dataset_id)
    parts = {k: [] for k in KEYS}
    for ep in d.iterate_episodes():
        obs = np.asarray(ep.observations)
        check(obs.ndim == 2, f"Minari dataset {dataset_id}: only flat Box observations are supported (got shape {obs.shape[1:]} per step)")
        parts["observations"].append(obs[:-1])
        parts["next_observations"].append(obs[1:])
        parts["actions"].append(np.asarray(ep.actions).reshape(len(obs) - 1, -1))
        parts["rewards"].append(np.asarray(ep.rewards))
        parts["terminals"].append(np.asarray(ep.terminations))
        parts["timeouts"].append(np.asarray(ep.truncations))
    check(parts["rewards"], f"Minari dataset {dataset_id} has no episodes")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    meta = {"source": f"minari:{dataset_id}"}
    md = d.storage.metadata
    if md.get("ref_min_score") is not None:
        meta.update(ref_min_return=float(md["ref_min_score"]), ref_max_return=float(md["ref_max_score"]))
    return arrays, meta


def load_minari_dataset(dataset_id: str, **checks) -> Tuple[Dataset, dict]:
    arrays, meta = load_minari(dataset_id)
    return from_arrays(arrays, f"Minari dataset {dataset_id}", **checks), meta
