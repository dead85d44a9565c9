"""Offline data: D4RL's qlearning rule, normalised score, checks, file round trips, sampling."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import datasets as D
from rlx.config import ConfigError


def toy(n=12, obs_dim=3, act_dim=2, seed=0, ends=None):
    """Rows 0..n-1 with obs[i] = i (so pairings are visible); episode ends given as {row: 'term'|'timeout'}."""
    rng = np.random.default_rng(seed)
    obs = np.repeat(np.arange(n, dtype=np.float32)[:, None], obs_dim, 1)
    ends = ends if ends is not None else {3: "term", 7: "timeout"}
    # next observation = the following row inside an episode; at an episode end the (unseen) last state
    nxt = np.concatenate([obs[1:], obs[-1:] + 0.5])
    for i in ends:
        nxt[i] = obs[i] + 0.5
    return dict(observations=obs, next_observations=nxt, actions=rng.uniform(-1, 1, (n, act_dim)).astype(np.float32),
                rewards=rng.normal(size=n).astype(np.float32),
                terminals=np.array([ends.get(i) == "term" for i in range(n)]),
                timeouts=np.array([ends.get(i) == "timeout" for i in range(n)]))


def test_qlearning_view_follows_d4rl_rule():
    ds = D.from_arrays(toy())
    tr = D.qlearning_view(ds)
    # naive D4RL loop: i in 0..N-2, skip timeouts[i], next_obs = obs[i+1], done = terminals[i]
    keep = [i for i in range(len(ds.rewards) - 1) if not ds.timeouts[i]]
    assert 7 not in keep and 3 in keep and 11 not in keep
    np.testing.assert_array_equal(tr.obs[:, 0], np.asarray(keep, np.float32))
    np.testing.assert_array_equal(tr.next_obs[:, 0], np.asarray(keep, np.float32) + 1)
    np.testing.assert_array_equal(tr.done, [1.0 if i == 3 else 0.0 for i in keep])
    np.testing.assert_array_equal(tr.reward, ds.rewards[keep])
    np.testing.assert_array_equal(tr.action, ds.actions[keep])


@pytest.mark.parametrize("env,lo,hi", [("hopper", -20.272305, 3234.3), ("halfcheetah", -280.178953, 12135.0),
                                       ("walker2d", 1.629008, 4592.3), ("ant", -325.6, 3879.7)])
def test_normalized_score_endpoints(env, lo, hi):
    np.testing.assert_allclose(D.normalized_score([lo, hi, (lo + hi) / 2], lo, hi), [0.0, 100.0, 50.0], atol=1e-9)


def test_episode_returns_and_describe():
    a = toy(ends={3: "term", 7: "timeout", 11: "term"})
    ds = D.from_arrays(a)
    r = a["rewards"].astype(np.float64)
    np.testing.assert_allclose(D.episode_returns(ds), [r[:4].sum(), r[4:8].sum(), r[8:12].sum()], rtol=1e-6)
    info = D.describe(ds, {"ref_min_return": 0.0, "ref_max_return": 10.0})
    assert info["episodes"] == 3 and info["terminals"] == 2 and info["timeouts"] == 1 and info["size"] == 12
    np.testing.assert_allclose(info["normalized_score_mean"], 10 * D.episode_returns(ds).mean(), rtol=1e-6)


@pytest.mark.parametrize("change,needle", [
    (lambda a: a.pop("rewards"), "missing key(s) rewards"),
    (lambda a: a.update(observation=a.pop("observations")), "found 'observation'"),
    (lambda a: a.update(rewards=a["rewards"][:-1]), "different lengths"),
    (lambda a: a["actions"].__setitem__((5, 1), 1.5), "actions must lie in [-1, 1]"),
    (lambda a: a["observations"].__setitem__((4, 0), np.nan), "'observations' holds 1 NaN/inf value(s), first at row 4"),
    (lambda a: a.update(terminals=np.zeros((12, 3), bool)), "'terminals' has shape (12, 3)"),
])
def test_bad_arrays_are_named(change, needle):
    a = toy()
    change(a)
    with pytest.raises(ConfigError) as e:
        D.from_arrays(a, "my.npz")
    assert "my.npz" in str(e.value) and needle in str(e.value)


def test_sizes_checked_against_the_env():
    with pytest.raises(ConfigError, match="observations have 3 features .the env brax/hopper has 11"):
        D.from_arrays(toy(), "x", env="brax/hopper", obs_dim=11)
    with pytest.raises(ConfigError, match="actions have 2 dimensions"):
        D.from_arrays(toy(), "x", obs_dim=3, act_dim=3)


def test_save_load_roundtrip_checksum_and_env(tmp_path):
    ds = D.from_arrays(toy())
    path = str(tmp_path / "d.npz")
    meta = D.save(path, ds, {"env": "brax/hopper", "kind": "medium", "seed": 3})
    ds2, meta2 = D.load(path, env="brax/hopper")
    for k in D.KEYS:
        np.testing.assert_array_equal(getattr(ds, k), getattr(ds2, k))
    assert meta2["checksum"] == meta["checksum"] == D.checksum(ds) and meta2["size"] == 12
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    with pytest.raises(ConfigError, match="made for 'brax/hopper', not 'brax/walker2d'"):
        D.load(path, env="brax/walker2d")
    # the same data with one reward changed no longer matches the stored checksum
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["rewards"] = arrays["rewards"].copy()
    arrays["rewards"][0] += 1
    np.savez(path, **arrays)
    with pytest.raises(ConfigError, match="does not match its checksum"):
        D.load(path)
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ConfigError, match="broken.npz: not a readable"):
        D.load(str(tmp_path / "broken.npz"))
    with pytest.raises(ConfigError, match="does not exist"):
        D.load(str(tmp_path / "none.npz"))


def test_d4rl_hdf5_loader(tmp_path):
    h5py = pytest.importorskip("h5py")
    a = toy()
    path = str(tmp_path / "hopper_medium-v2.hdf5")
    with h5py.File(path, "w") as f:  # D4RL's layout: top-level arrays, metadata/* scalars
        for k in ("observations", "actions", "rewards", "terminals", "timeouts"):
            f.create_dataset(k, data=a[k])
        f.create_dataset("metadata/algorithm", data="SAC")
    ds, meta = D.load(path)
    np.testing.assert_array_equal(ds.observations, a["observations"])
    np.testing.assert_array_equal(ds.next_observations[:-1], a["observations"][1:])  # v0 files: row t + 1
    assert meta["algorithm"] == "SAC" and meta["source"] == "d4rl-hdf5"


def test_minari_roundtrip_and_minari_made_dataset(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    from minari.data_collector import EpisodeBuffer
    import minari
    from gymnasium import spaces

    from rlx.datasets import loaders

    ds = D.from_arrays(toy(ends={3: "term", 7: "timeout", 11: "timeout"}))
    loaders.to_minari(ds, {"env": "brax/toy", "kind": "medium", "ref_min_return": -1.0, "ref_max_return": 5.0}, "rlx/toy/medium-v0")
    back, meta = loaders.load_minari_dataset("rlx/toy/medium-v0", obs_dim=3, act_dim=2)
    for k in D.KEYS:
        np.testing.assert_array_equal(getattr(ds, k), getattr(back, k), err_msg=k)
    assert meta["ref_min_return"] == -1.0 and meta["ref_max_return"] == 5.0

    # a dataset written by minari's own API (two episodes, one terminated, one truncated)
    rng = np.random.default_rng(1)
    eps = []
    for i, (T, term) in enumerate([(5, True), (4, False)]):
        eps.append(EpisodeBuffer(id=i, observations=rng.normal(size=(T + 1, 3)).astype(np.float32),
                                 actions=rng.uniform(-1, 1, (T, 2)).astype(np.float32), rewards=list(rng.normal(size=T)),
                                 terminations=[False] * (T - 1) + [term], truncations=[False] * (T - 1) + [not term]))
    minari.create_dataset_from_buffers("ext/toy/expert-v0", eps, observation_space=spaces.Box(-np.inf, np.inf, (3,), np.float32),
                                       action_space=spaces.Box(-1, 1, (2,), np.float32))
    got, _ = loaders.load_minari_dataset("ext/toy/expert-v0")
    assert len(got.rewards) == 9
    np.testing.assert_array_equal(got.terminals.nonzero()[0], [4])
    np.testing.assert_array_equal(got.timeouts.nonzero()[0], [8])
    np.testing.assert_allclose(got.next_observations[:5], eps[0].observations[1:], rtol=1e-6)
    np.testing.assert_allclose(got.observations[5:], eps[1].observations[:-1], rtol=1e-6)
    with pytest.raises(ConfigError, match="no Minari dataset 'nope/x-v0'.*ext/toy/expert-v0"):
        loaders.load_minari("nope/x-v0")


def test_sampling_inside_jit_shares_one_dataset():
    tr = D.qlearning_view(D.from_arrays(toy(n=50, ends={}), "toy"))
    tr = jax.tree.map(jnp.asarray, tr)
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    # dataset closed over (unbatched); four seeds draw their own rows
    out = jax.jit(jax.vmap(lambda k: D.sample(tr, k, 256)))(keys)
    assert out.obs.shape == (4, 256, 3) and out.done.shape == (4, 256)
    rows = np.asarray(out.obs[..., 0]).astype(int)
    np.testing.assert_array_equal(np.asarray(out.next_obs[..., 0]), rows + 1)  # pairs stay pairs
    assert not np.array_equal(rows[0], rows[1])
    counts = np.bincount(rows.ravel(), minlength=49)
    assert counts.min() > 0 and counts.max() < 3 * counts.mean()  # uniform over all 49 rows


def test_obs_stats_match_numpy():
    tr = D.qlearning_view(D.from_arrays(toy(n=30, ends={}), "toy"))
    mean, std = D.obs_stats(tr)
    np.testing.assert_allclose(mean, tr.obs.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, tr.obs.std(0) + 1e-3, rtol=1e-6)
    n = D.normalize_obs(tr, mean, std)
    np.testing.assert_allclose(n.obs.mean(0), 0, atol=1e-5)


def test_info_command(tmp_path):
    import subprocess
    import sys

    path = str(tmp_path / "d.npz")
    D.save(path, D.from_arrays(toy(ends={3: "term", 7: "timeout", 11: "term"})),
           {"env": "brax/hopper", "kind": "medium", "ref_min_return": 0.0, "ref_max_return": 10.0})
    r = subprocess.run([sys.executable, "-m", "rlx.datasets", "info", path], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "12 rows, obs 3, actions 2, 3 complete episodes (2 terminal, 1 timeout)" in r.stdout and "kind: medium" in r.stdout
    r = subprocess.run([sys.executable, "-m", "rlx.datasets", "info", str(tmp_path / "missing.npz")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "missing.npz' does not exist" in r.stderr and "Traceback" not in r.stderr


# ---- generation (rlx.datasets.generate): rollouts on a cheap continuous env stand in for brax

def _policies(path, obs_dim=3, act_dim=1, n_replay=3):
    from rlx.datasets import generate as G

    rng = np.random.default_rng(0)

    def pol(scale):
        return G.Policy((rng.normal(size=(obs_dim, 8)).astype(np.float32) * scale, rng.normal(size=(8, act_dim)).astype(np.float32)),
                        (np.zeros(8, np.float32), np.zeros(act_dim, np.float32)), np.full(act_dim, -1.0, np.float32),
                        np.zeros(obs_dim, np.float32), np.ones(obs_dim, np.float32))

    pols = {"expert": pol(1.0), "medium": pol(0.5), **{f"replay_{i:03d}": pol(0.1 * i) for i in range(n_replay)}}
    G.save_policies(path, pols, {"env": "brax/hopper", "backend": "spring", "activation": "tanh", "policies": {k: {} for k in pols},
                                 "ref_min_return": -1500.0, "ref_max_return": -150.0})
    return pols


@pytest.fixture
def pendulum_generator(monkeypatch, tmp_path):
    import rlx.envs as envs
    from rlx.datasets import generate as G

    env = envs.make("Pendulum-v1")  # 200-step episodes, no termination
    monkeypatch.setattr(G, "_make_env", lambda name, backend: env)
    path = str(tmp_path / "hopper.npz")
    pols = _policies(path)
    return G, path, pols, env


def test_rollout_streams_and_episode_ends(pendulum_generator, monkeypatch):
    G, _, pols, env = pendulum_generator
    monkeypatch.setattr(G, "STREAM_STEPS", 300)
    a = G.rollout(env, pols["medium"], "tanh", jax.random.PRNGKey(0), 1000)  # 4 streams of 250 steps
    ds = D.from_arrays(a, "rollout")
    ends = set(np.nonzero(ds.timeouts)[0])
    assert ends == {199, 249, 449, 499, 699, 749, 949, 999}  # time limits inside streams, and every stream's cut
    assert not ds.terminals.any() and np.abs(ds.actions).max() <= 1.0
    inner = np.array([i for i in range(999) if i not in ends])
    np.testing.assert_array_equal(ds.next_observations[inner], ds.observations[inner + 1])
    tr = D.qlearning_view(ds)  # never pairs across an episode end or a stream cut
    np.testing.assert_array_equal(tr.next_obs, ds.next_observations[inner])


def test_generate_kinds_deterministic(pendulum_generator):
    G, path, _, _ = pendulum_generator
    a, ma = G.generate("brax/hopper", "medium", size=600, policies_path=path, progress=False)
    b, mb = G.generate("brax/hopper", "medium", size=600, policies_path=path, progress=False)
    c, mc = G.generate("brax/hopper", "medium", size=600, seed=1, policies_path=path, progress=False)
    assert ma["checksum"] == mb["checksum"] != mc["checksum"] and len(a.rewards) == 600
    assert ma["ref_min_return"] == -1500.0 and ma["env_backend"] == "spring" and "--kind medium" in ma["command"]
    r, _ = G.generate("brax/hopper", "medium-replay", size=900, policies_path=path, progress=False)
    assert len(r.rewards) == 900  # three replay policies, 300 rows each, each its own stream
    assert set(np.nonzero(r.timeouts)[0]) >= {299, 599, 899}
    me, _ = G.generate("brax/hopper", "medium-expert", size=800, policies_path=path, progress=False)
    assert len(me.rewards) == 800 and me.timeouts[399]
    with pytest.raises(ConfigError, match="holds policies for 'brax/hopper', not 'brax/walker2d'"):
        G.generate("brax/walker2d", "medium", size=10, policies_path=path, progress=False)


def test_dataset_names_resolve_and_cache(pendulum_generator, monkeypatch, tmp_path):
    G, path, _, _ = pendulum_generator
    monkeypatch.setattr(G, "POLICY_DIR", os.path.dirname(path))
    monkeypatch.setenv("RLX_DATASETS_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(G, "SIZE", 300)
    f = G.resolve("brax/hopper-medium", progress=False)
    assert f.endswith("brax_hopper-medium-seed0.npz") and os.path.exists(f)
    mtime = os.path.getmtime(f)
    assert G.resolve("brax/hopper-medium", progress=False) == f and os.path.getmtime(f) == mtime  # cached
    ds, meta = D.load(f, env="brax/hopper")
    assert meta["kind"] == "medium" and len(ds.rewards) == 300
    with pytest.raises(ConfigError, match="unknown dataset 'brax/hopper-mediun'.*brax/hopper-medium-replay"):
        G.resolve("brax/hopper-mediun")
