"""The shared runner: outputs, sweeps, sharding, resume after SIGKILL, bad input, NaN stops."""
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import toy_algo
from rlx import cli as C
from rlx import run as R
from rlx.config import ConfigError

jax.devices()  # start JAX's backends here, so that cli.main in this process leaves XLA_FLAGS alone

pytestmark = pytest.mark.timeout(600)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "tests", "toy_algo.py")
SUMMARY_KEYS = {"algorithm", "env", "num_seeds", "env_steps", "final_return", "final_return_mean", "final_return_iqm",
                "final_return_ci95", "wall_s", "compile_s", "env_steps_per_s", "device", "versions"}


def read_leaves(path):
    with np.load(path) as z:
        return [z[f"leaf_{i}"] for i in range(sum(k.startswith("leaf_") for k in z.files))]


def toy_run(**kw):
    cfg = kw.pop("config", toy_algo.Config())
    kw.setdefault("progress", False)
    return R.run(toy_algo.Config, toy_algo.make_train, cfg, name="toy", **kw)


def cli(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **kw.pop("env", {}))
    return subprocess.run([sys.executable, TOY] + args, capture_output=True, text=True, env=env, timeout=300, **kw)


def test_outputs_and_summary(tmp_path):
    out = str(tmp_path / "run")
    res = toy_run(num_seeds=3, out=out, log_every=256)
    for f in ("config.json", "metrics.csv", "summary.json", "checkpoint.npz", "curve.png"):
        assert os.path.exists(os.path.join(out, f)), f
    s = json.load(open(os.path.join(out, "summary.json")))
    assert SUMMARY_KEYS <= set(s)
    assert s["num_seeds"] == 3 and len(s["final_return"]) == 3 and s["env_steps"] == 2048
    # evaluate() returns 10 w, and the final return comes from the final evaluation
    np.testing.assert_allclose(s["final_return"], 10 * np.asarray(res.state.w), rtol=1e-6)
    assert s["final_return_ci95"][0] <= s["final_return_mean"] <= s["final_return_ci95"][1]
    rows = res.metrics
    assert {"env_steps", "seed", "episode_return", "loss"} <= set(rows[0])
    assert len(rows) == 3 * (2048 // 256)
    assert sorted({r["env_steps"] for r in rows}) == list(range(256, 2049, 256))
    # CartPole with random actions: episodes of ~22 steps, so the training returns are in range
    rets = [r["episode_return"] for r in rows]
    assert 8 < np.mean(rets) < 60


def test_seeds_differ_and_are_reproducible():
    a = toy_run(num_seeds=2, seed=7)
    b = toy_run(num_seeds=2, seed=7)
    c = toy_run(num_seeds=2, seed=8)
    np.testing.assert_array_equal(np.asarray(a.state.w), np.asarray(b.state.w))
    assert a.state.w[0] != a.state.w[1]
    assert not np.allclose(np.asarray(a.state.w), np.asarray(c.state.w))


def test_sweep_grid_is_vmapped_with_common_seeds():
    res = toy_run(num_seeds=2, sweep={"lr": [0.1, 0.5], "gamma": [0.9, 0.99]}, log_every=1024)
    assert [(r["lr"], r["gamma"], r["seed"]) for r in res.runs] == [
        (lr, g, s) for lr in (0.1, 0.5) for g in (0.9, 0.99) for s in (0, 1)]
    w = np.asarray(res.state.w)
    assert w.shape == (8,)
    assert len(res.summary["sweep_results"]) == 4
    # seed s sees the same env randomness in every setting: equal episode statistics
    ep = {}
    for r in res.metrics:
        ep.setdefault((r["seed"], r["env_steps"]), set()).add(r["episode_return"])
    assert all(len(v) == 1 for v in ep.values())
    # and a swept run equals the same setting run alone
    alone = toy_run(num_seeds=2, config=toy_algo.Config(lr=0.5, gamma=0.9), log_every=1024)
    np.testing.assert_allclose(w[4:6], np.asarray(alone.state.w), rtol=1e-6)


def test_sweep_errors():
    with pytest.raises(ConfigError, match="cannot be swept"):
        C.parse_sweeps(toy_algo.Config, ["num_envs=2,4"])
    with pytest.raises(ConfigError, match="no field"):
        C.parse_sweeps(toy_algo.Config, ["learning_rate=1,2"])
    with pytest.raises(ConfigError, match=r"gamma.*\[0, 1\]"):  # every combination is validated
        toy_run(sweep={"gamma": [0.9, 1.5]})


def test_plan_chunks():
    assert R.plan_chunks(976, 20) == [16] * 61
    assert sum(R.plan_chunks(977, 20)) == 977 and len(set(R.plan_chunks(977, 20))) <= 2
    assert R.plan_chunks(5, 100) == [5]


def test_sharded_equals_single_device(tmp_path):
    code = (
        "import json, sys, numpy as np, jax; sys.path.insert(0, %r); import toy_algo; from rlx import run as R;"
        "res = R.run(toy_algo.Config, toy_algo.make_train, toy_algo.Config(), name='toy', num_seeds=3,"
        " sweep={'lr': [0.1, 0.3]}, progress=False);"
        "one = R.run(toy_algo.Config, toy_algo.make_train, toy_algo.Config(), name='toy', progress=False);"
        "print(json.dumps({'n': jax.local_device_count(), 'w': np.asarray(res.state.w).tolist(),"
        " 'ret': [r['episode_return'] for r in res.metrics], 'used': [res.summary['devices'], one.summary['devices']],"
        " 'split': [[R.shard_runs(np.zeros((n, 2)))[1], len(R.shard_runs(np.zeros((n, 2)))[0].sharding.device_set)]"
        "           if n > 1 else R.shard_runs(np.zeros((n, 2)))[1] for n in (6, 8, 1)]}))"
        % os.path.join(ROOT, "tests"))
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    sharded = json.loads(p.stdout.strip().splitlines()[-1])
    assert sharded["n"] == 4
    assert sharded["used"] == [4, 1]  # 6 runs padded to 8 over 4 devices; 1 run on 1 device, not padded to 4
    assert sharded["split"] == [[3, 3], [4, 4], 1]  # shard_runs: the most devices that divide the runs evenly
    single = toy_run(num_seeds=3, sweep={"lr": [0.1, 0.3]})
    np.testing.assert_allclose(sharded["w"], np.asarray(single.state.w), rtol=1e-6)
    np.testing.assert_allclose(sharded["ret"], [r["episode_return"] for r in single.metrics], rtol=1e-6)


@pytest.mark.parametrize("num_seeds", [2, 3])  # on 2 devices: 3 runs are padded to 4
def test_resume_after_sigkill_equals_uninterrupted(tmp_path, num_seeds):
    args = ["--num-seeds", str(num_seeds), "--total-timesteps", "3200", "--log-every", "320",
            "--checkpoint-every", "320", "--no-progress"]
    two = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    full = str(tmp_path / "full")
    p = cli(args + ["--out", full], env=two)
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.load(open(os.path.join(full, "summary.json")))["devices"] == 2

    killed = str(tmp_path / "killed")
    proc = subprocess.Popen([sys.executable, TOY] + args + ["--out", killed, "--slow", "0.02"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, **two))
    ckpt = os.path.join(killed, "checkpoint.npz")
    deadline = time.time() + 240
    while time.time() < deadline:
        if os.path.exists(ckpt):
            with np.load(ckpt) as z:
                chunk = json.loads(str(z["host"]))["chunk"]
            if chunk >= 2:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with np.load(ckpt) as z:
        chunk = json.loads(str(z["host"]))["chunk"]
    assert 2 <= chunk < 10, "the run was not killed mid-way"
    assert not os.path.exists(os.path.join(killed, "summary.json"))

    # resume takes its settings from config.json; only --slow differs here, so pass it again
    p = cli(["--resume", killed, "--slow", "0.02", "--no-progress"], env=two)
    assert p.returncode == 0, p.stderr[-3000:]
    a = read_leaves(os.path.join(full, "checkpoint.npz"))
    b = read_leaves(ckpt)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert open(os.path.join(full, "metrics.csv")).read() == open(os.path.join(killed, "metrics.csv")).read()
    assert json.load(open(os.path.join(killed, "summary.json")))["resumed"] is True


def test_resume_with_different_config_is_refused(tmp_path):
    out = str(tmp_path / "r")
    assert cli(["--out", out, "--no-progress"]).returncode == 0
    p = cli(["--resume", out, "--lr", "0.5"])
    assert p.returncode == 2 and "lr" in p.stderr and "differ" in p.stderr
    # and a new run into a used directory is refused too
    p = cli(["--out", out])
    assert p.returncode == 2 and "--resume" in p.stderr


def test_unwritable_out(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(SystemExit):
        C.main(toy_algo.Config, toy_algo.make_train, "toy", argv=["--out", str(blocker / "sub")])
    assert "not writable" in capsys.readouterr().err


def test_nan_stops_run_names_seed_and_update_and_keeps_checkpoint(tmp_path):
    out = str(tmp_path / "nan")
    with pytest.raises(R.NonFiniteError, match=r"update 5 .*loss.*last good checkpoint"):
        toy_run(num_seeds=2, out=out, log_every=64, checkpoint_every=64, config=toy_algo.Config(nan_at_update=5))
    with np.load(os.path.join(out, "checkpoint.npz")) as z:
        assert json.loads(str(z["host"]))["chunk"] == 2  # updates 1-4 are good; chunk 3 (updates 5-6) is not
    assert not os.path.exists(os.path.join(out, "summary.json"))


def test_eval_episodes_reach_evaluate(tmp_path):
    """--eval-episodes K is the episode count evaluate() gets; without it, the algorithm's own default."""
    import dataclasses

    def make_train(cfg):  # the toy, but its evaluation returns the number of episodes it was asked for
        return dataclasses.replace(toy_algo.make_train(cfg), evaluate=lambda s, key, n: 0.0 * s.w + n,
                                   eval_episodes=7)

    small = toy_algo.Config(total_timesteps=256)
    for asked, got in ((None, 7), (3, 3)):
        out = str(tmp_path / f"e{asked}")
        R.run(toy_algo.Config, make_train, small, name="toy", num_seeds=2, out=out, eval_episodes=asked,
              progress=False)
        assert json.load(open(os.path.join(out, "summary.json")))["final_return"] == [got, got]
        assert json.load(open(os.path.join(out, "config.json")))["eval_episodes"] == got
    s = R.run(toy_algo.Config, make_train, small, name="toy", eval_episodes=0, progress=False).summary
    assert s["final_return_source"] != "final evaluation"


def test_cli_kebab_flags_reach_config(tmp_path):
    out = str(tmp_path / "k")
    p = cli(["--num-envs", "2", "--num-steps", "4", "--lr", "0.25", "--total-timesteps", "1e3", "--out", out, "--no-progress"])
    assert p.returncode == 0, p.stderr[-2000:]
    cfg = json.load(open(os.path.join(out, "config.json")))["config"]
    assert (cfg["num_envs"], cfg["num_steps"], cfg["lr"], cfg["total_timesteps"]) == (2, 4, 0.25, 1000)


def test_chunk_state_donated_on_cpu_only_when_big():
    import jax
    import jax.numpy as jnp

    from rlx import devices

    cpu = jax.devices("cpu")
    small = {"w": jax.ShapeDtypeStruct((16, 64, 64), jnp.float32)}
    big = {"buffer": jax.ShapeDtypeStruct((devices.DONATE_MIN_BYTES // 4 + 1,), jnp.float32), **small}
    assert devices.donate_argnums(small, cpu) == () and devices.donate_argnums(big, cpu) == (0,)
