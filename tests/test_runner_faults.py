"""The runner under bad input and faults (issue 17): every user error stops with exit 2 and a message
naming the file/flag, before anything compiles and without writing anything; a fault during a run
(disk full, read-only) names the path and the last good checkpoint and leaves no temp files; two runs
never share a directory; a damaged checkpoint falls back to the one before it."""
import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import toy_algo
from rlx import cli as C
from rlx import programs, report
from rlx import run as R
from rlx.config import ConfigError

jax.devices()  # start JAX's backends here, so that cli.main in this process leaves XLA_FLAGS alone
pytestmark = pytest.mark.timeout(600)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(ROOT, "tests", "toy_algo.py")
FAST = ["--total-timesteps", "640", "--log-every", "64", "--checkpoint-every", "64", "--no-progress"]


def cli(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1", **kw.pop("env", {}))
    return subprocess.run([sys.executable, TOY] + args, capture_output=True, text=True, env=env, timeout=300, **kw)


def toy_run(**kw):
    cfg = kw.pop("config", toy_algo.Config())
    kw.setdefault("progress", False)
    return R.run(toy_algo.Config, toy_algo.make_train, cfg, name="toy", **kw)


def leaves(path):
    with np.load(path) as z:
        return [z[f"leaf_{i}"] for i in range(sum(k.startswith("leaf_") for k in z.files))]


def host_of(path):
    with np.load(path) as z:
        return json.loads(str(z["host"]))


@pytest.fixture
def no_compile(monkeypatch):
    """Fail the test if the runner gets as far as compiling."""
    def boom(*a, **k):
        raise AssertionError("compiled before refusing")
    monkeypatch.setattr(programs.Programs, "compile", boom)


def main_exit(args, capsys):
    with pytest.raises(SystemExit) as e:
        C.main(toy_algo.Config, toy_algo.make_train, "toy", argv=args)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return e.value.code, err


# ------------------------------------------------------------------------------------ flags


@pytest.mark.parametrize("args,msg", [
    (["--env", "CartPol-v1"], "Did you mean: CartPole-v1"),
    (["--env", "Pendulum-v1"], "discrete actions"),
    (["--sweep", "num_envs=2,4"], "cannot be swept"),
    (["--num-envs", "two"], "cannot read 'two' as int"),
    (["--eval-every", "-1"], "--eval-every must be >= 0"),
    (["--log-every", "-100"], "--log-every must be >= 1"),
    (["--checkpoint-every", "-5"], "--checkpoint-every must be >= 1"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    (["--num-seeds", "0"], "--num-seeds must be >= 1"),
    (["--eval-episodes", "-1"], "--eval-episodes must be >= 0"),
    (["--gamma", "1.5"], "--gamma must be in [0, 1]"),
    (["--log", "mlflow"], "unknown logger"),
])
def test_bad_flags_exit_2_and_write_nothing(args, msg, capsys, tmp_path, no_compile):
    out = tmp_path / "x"
    code, err = main_exit(args + ["--out", str(out)], capsys)
    assert code == 2 and msg in err
    assert not out.exists()


def test_missing_logger_package_is_refused_before_compiling(monkeypatch, capsys, tmp_path, no_compile):
    real = report.importlib.util.find_spec
    monkeypatch.setattr(report.importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    code, err = main_exit(["--log", "csv,wandb", "--out", str(tmp_path / "w")], capsys)
    assert code == 2 and "--log wandb needs the wandb package" in err and "pip install" in err
    assert not (tmp_path / "w").exists()


def test_total_timesteps_rounding_is_stated(tmp_path):
    out = str(tmp_path / "r")
    p = cli(["--total-timesteps", "1.5e3", "--out", out, "--log-every", "320"])
    assert p.returncode == 0, p.stderr[-3000:]
    header = p.stdout.splitlines()[0]
    assert "1,472 env steps per run" in header and "--total-timesteps 1,500 rounded down to 1,472" in header
    s = json.load(open(os.path.join(out, "summary.json")))
    assert (s["env_steps"], s["env_steps_requested"]) == (1472, 1500) and "32 env steps each" in s["env_steps_note"]
    # 500000 with 3 envs x 8 steps = 24 steps per update: 20,833 updates = 499,992 steps
    plan, base, _ = R.make_plan(toy_algo.Config, toy_algo.make_train, toy_algo.Config(total_timesteps=500_000, num_envs=3),
                                R.PYTHON_NAMES, num_seeds=1, seed=0, sweep={}, log=("csv",), out=None, log_every=None,
                                eval_every=0, eval_episodes=None, checkpoint_every=None, resume=False)
    assert plan.total_steps == 499_992 and "rounded down to 499,992" in R.steps_note(plan, base)


# ------------------------------------------------------------------------------------ seeds


def test_seed_column_holds_the_seed_used_and_runs_reproduce_alone(tmp_path):
    a = toy_run(num_seeds=2, seed=7, out=str(tmp_path / "a"), log_every=256)
    assert [(r["run"], r["seed"]) for r in a.metrics[:2]] == [(0, 7), (1, 8)]
    assert a.summary["seeds"] == [7, 8] and [r["seed"] for r in a.summary["runs"]] == [7, 8]
    b = toy_run(num_seeds=1, seed=8, log_every=256)  # run 1 of --seed 7 --num-seeds 2
    np.testing.assert_allclose(float(b.state.w[0]), float(a.state.w[1]), rtol=1e-6)
    assert [r["episode_return"] for r in b.metrics] == [r["episode_return"] for r in a.metrics if r["run"] == 1]


# ------------------------------------------------------------------------------------ the run directory


def test_python_api_resume_and_overwrite(tmp_path):
    out = str(tmp_path / "p")
    small = toy_algo.Config(total_timesteps=256)
    first = toy_run(config=small, out=out, num_seeds=2)
    with pytest.raises(ConfigError) as e:
        toy_run(config=small, out=out, num_seeds=2)
    assert "resume=True" in str(e.value) and "overwrite=True" in str(e.value) and "--" not in str(e.value)
    again = toy_run(config=small, out=out, num_seeds=2, overwrite=True)
    np.testing.assert_array_equal(np.asarray(first.state.w), np.asarray(again.state.w))
    done = toy_run(config=small, out=out, num_seeds=2, resume=True)  # nothing left to train: the same result
    np.testing.assert_array_equal(np.asarray(first.state.w), np.asarray(done.state.w))
    # the command line names its flags
    p = cli(["--total-timesteps", "256", "--num-seeds", "2", "--out", out])
    assert p.returncode == 2 and f"--resume {out}" in p.stderr and "--overwrite" in p.stderr
    assert cli(["--total-timesteps", "256", "--num-seeds", "2", "--out", out, "--overwrite", "--no-progress"]).returncode == 0


def test_second_run_in_the_same_directory_is_refused(tmp_path):
    out = str(tmp_path / "busy")
    first = subprocess.Popen([sys.executable, TOY] + FAST + ["--out", out, "--slow", "0.6"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = os.path.join(out, "lock")
    deadline = time.time() + 120
    while not os.path.exists(lock) and time.time() < deadline:
        time.sleep(0.05)
    assert os.path.exists(lock)
    assert json.load(open(lock)) == {"pid": first.pid, "host": socket.gethostname()}
    second = cli(FAST + ["--out", out, "--overwrite"])
    assert second.returncode == 2 and "in use by process" in second.stderr and lock in second.stderr
    assert "Traceback" not in second.stderr
    assert first.wait(300) == 0, first.stderr.read()[-3000:]
    assert not os.path.exists(lock)
    rows = [r for r in open(os.path.join(out, "metrics.csv")).read().splitlines()[1:]]
    assert len(rows) == 10 and len(set(r.split(",")[0] for r in rows)) == 10  # each log point once


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "stale"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()
    (out / "lock").write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    (out / f"checkpoint.npz.tmp{dead.pid}").write_bytes(b"half a checkpoint")  # what a killed run leaves
    p = cli(FAST + ["--out", str(out)])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "stale lock" in p.stdout and not (out / "lock").exists()
    assert not [f for f in os.listdir(out) if ".tmp" in f]


def test_damaged_checkpoint_falls_back_to_the_previous_one(tmp_path):
    full = str(tmp_path / "full")
    assert cli(FAST + ["--out", full]).returncode == 0
    ckpt, prev = os.path.join(full, "checkpoint.npz"), os.path.join(full, "checkpoint.prev.npz")
    assert host_of(prev)["chunk"] == host_of(ckpt)["chunk"] - 1  # every save keeps the one before
    good_csv, good_leaves = open(os.path.join(full, "metrics.csv")).read(), leaves(ckpt)
    data = open(ckpt, "rb").read()
    open(ckpt, "wb").write(data[: len(data) // 2])  # cut short
    p = cli(["--resume", full, "--no-progress"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "checkpoint.npz is damaged" in p.stdout and "checkpoint.prev.npz" in p.stdout
    assert open(os.path.join(full, "metrics.csv")).read() == good_csv  # truncated to prev's rows, then the rest
    for x, y in zip(good_leaves, leaves(ckpt)):
        np.testing.assert_array_equal(x, y)


def test_damaged_checkpoint_without_a_previous_one_exits_2_before_compiling(tmp_path, capsys, no_compile):
    out = str(tmp_path / "d")
    assert cli(FAST + ["--out", out]).returncode == 0
    os.remove(os.path.join(out, "checkpoint.prev.npz"))
    ckpt = os.path.join(out, "checkpoint.npz")
    open(ckpt, "wb").write(open(ckpt, "rb").read()[:100])
    code, err = main_exit(["--resume", out], capsys)
    assert code == 2 and f"{ckpt} is damaged" in err and "no earlier checkpoint" in err


@pytest.mark.parametrize("text,msg", [("{\"algorithm\": \"toy\", ", "is not valid JSON"), ("[1, 2]", "not an object"),
                                      ("{\"algorithm\": \"toy\"}", "does not describe a toy run")])
def test_corrupt_config_json_exits_2_naming_it(tmp_path, capsys, no_compile, text, msg):
    out = tmp_path / "c"
    out.mkdir()
    (out / "config.json").write_text(text)
    code, err = main_exit(["--resume", str(out)], capsys)
    assert code == 2 and str(out / "config.json") in err and msg in err


FAULT = r"""
import errno, os, sys
sys.path.insert(0, %(tests)r)
import toy_algo
from rlx.cli import main
calls = {"n": 0}
real = getattr(os, %(fn)r)
def faulty(*a, **k):
    calls["n"] += 1
    if calls["n"] > %(after)d:
        raise OSError(errno.%(err)s, os.strerror(errno.%(err)s))
    return real(*a, **k)
setattr(os, %(fn)r, faulty)
sys.argv = ["toy"] + %(args)r
main(toy_algo.Config, toy_algo.make_train, name="toy")
"""


@pytest.mark.parametrize("fn,err", [("fsync", "ENOSPC"), ("replace", "EROFS")])
def test_disk_full_or_read_only_names_the_path_and_the_last_good_checkpoint(tmp_path, fn, err):
    out = str(tmp_path / "f")
    code = FAULT % dict(tests=os.path.join(ROOT, "tests"), fn=fn, after=6, err=err, args=FAST + ["--out", out])
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr[-3000:]
    assert "Traceback" not in p.stderr and "could not write " + out in p.stderr
    assert os.strerror(getattr(errno, err)) in p.stderr
    assert f"the last good checkpoint is {os.path.join(out, 'checkpoint.npz')}" in p.stderr and f"--resume {out}" in p.stderr
    assert not [f for f in os.listdir(out) if ".tmp" in f] and not os.path.exists(os.path.join(out, "lock"))
    # and the run continues from there to the same end as an uninterrupted one
    assert cli(["--resume", out, "--no-progress"]).returncode == 0
    full = str(tmp_path / "full")
    assert cli(FAST + ["--out", full]).returncode == 0
    assert open(os.path.join(out, "metrics.csv")).read() == open(os.path.join(full, "metrics.csv")).read()


def test_first_checkpoint_comes_after_the_first_chunk(tmp_path):
    """A run killed in its first minute can be resumed (the default saves after chunk 1, then every 60 s)."""
    out = str(tmp_path / "k")
    args = ["--total-timesteps", "640", "--log-every", "64", "--no-progress", "--out", out, "--slow", "0.05"]
    proc = subprocess.Popen([sys.executable, TOY] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ckpt = os.path.join(out, "checkpoint.npz")
    deadline = time.time() + 200
    while not os.path.exists(ckpt) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert host_of(ckpt)["chunk"] < 10, "the run finished before it was killed"
    p = cli(["--resume", out, "--slow", "0.05", "--no-progress"])  # the stale lock of the killed run is taken over
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.load(open(os.path.join(out, "summary.json")))["resumed"] is True


# ------------------------------------------------------------------------------------ --help


HELP = r"""
import json, runpy, sys, time
t0 = time.perf_counter()
sys.argv = ["ppo.py"] + %(args)r
try:
    runpy.run_path(%(path)r, run_name="__main__")
except SystemExit:
    pass
print(json.dumps({"s": time.perf_counter() - t0, "heavy": sorted(m for m in ("brax", "matplotlib", "gymnax", "rlx.run")
                                                                 if m in sys.modules)}))
"""


def test_help_shows_the_preset_formats_and_ranges_and_starts_light():
    p = subprocess.run([sys.executable, "-c", HELP % dict(args=["--env", "brax/hopper", "--help"],
                                                          path=os.path.join(ROOT, "algorithms", "ppo.py"))],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, COLUMNS="250"))
    assert p.returncode == 0, p.stderr[-3000:]
    text = p.stdout
    info = json.loads(text.strip().splitlines()[-1])
    assert info["heavy"] == []  # --help imports neither brax, gymnax, matplotlib nor the runner
    assert "for --env brax/hopper" in text
    assert "(default 2048 [preset])" in text  # num_envs from the brax preset, not the Config default (4)
    assert "(default positional [preset])" in text  # env_backend
    assert "--hidden INT,INT,..." in text and "(default 256,256 [preset])" in text
    assert "in [0, 1]" in text  # gamma's declared range
    assert "--overwrite" in text and "PRNGKey(seed + i)" in text
