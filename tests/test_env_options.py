"""The brax options of an algorithm's Config (`env_backend`, `env_autoreset`) through the one adapter,
`envs.make_from_config`: "auto" means the env's default; an unknown value or any explicit value on a
non-brax env stops on the command line with exit 2, a message naming the flag, no traceback and
nothing written. Making a brax env prints nothing on stdout (mujoco's "Failed to import warp")."""
import json
import os
import subprocess
import sys

import pytest

import rlx.envs as envs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(algo, args, out):
    proc = subprocess.run([sys.executable, os.path.join(REPO, "algorithms", f"{algo}.py"), *args, "--out", str(out),
                           "--no-progress"], capture_output=True, text=True, timeout=600, cwd=REPO)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("algo, args, expect", [
    ("ppo", ["--env", "CartPole-v1", "--env-backend", "foo"], ["--env-backend", "foo", "auto", "spring", "positional"]),
    ("ppo", ["--env", "CartPole-v1", "--env-autoreset", "sometimes"], ["--env-autoreset", "fresh", "cached"]),
    ("ppo", ["--env", "CartPole-v1", "--env-backend", "positional"], ["--env-backend positional", "brax", "CartPole-v1"]),
    ("ppo", ["--env", "Pendulum-v1", "--env-autoreset", "cached"], ["--env-autoreset cached", "brax", "Pendulum-v1"]),
    ("mdpo", ["--env", "CartPole-v1", "--env-backend", "spring"], ["--env-backend spring", "brax", "CartPole-v1"]),
    ("mdpo_offpolicy", ["--env", "Pendulum-v1", "--env-backend", "generalized", "--env-autoreset", "fresh"],
     ["--env-backend generalized and --env-autoreset fresh", "brax", "Pendulum-v1"]),
    ("stream_ac", ["--env", "Pendulum-v1", "--env-autoreset", "cached"], ["--env-autoreset cached", "brax", "Pendulum-v1"]),
])
def test_brax_options_refused_before_anything_is_written(tmp_path, algo, args, expect):
    rc, text = _cli(algo, args, tmp_path / "run")
    assert rc == 2, text
    assert "Traceback" not in text, text
    for piece in expect:
        assert piece in text, (piece, text)
    assert not (tmp_path / "run" / "config.json").exists()


def test_make_from_config_defaults_and_refusals():
    from rlx.algorithms import mdpo, ppo

    cfg = ppo.Config(env="CartPole-v1")
    assert cfg.env_backend == "auto" and cfg.env_autoreset == "auto"
    assert envs.make_from_config(cfg).name == "CartPole-v1"
    with pytest.raises(ValueError, match="--env-backend mjx only applies to brax envs"):
        envs.make_from_config(mdpo.Config(env="CartPole-v1", env_backend="mjx"))
    with pytest.raises(ValueError, match="unknown environment 'CartPol-v1'.*CartPole-v1"):  # the name first
        envs.make_from_config(ppo.Config(env="CartPol-v1", env_backend="mjx"))


def test_brax_env_from_preset_is_silent_on_stdout(tmp_path):
    """PPO's brax preset (positional backend, cached resets) through the adapter, in a fresh
    interpreter: nothing on stdout (no "Failed to import warp"), the options reach the env."""
    result = tmp_path / "result.json"
    code = f"""
import json
import rlx.envs as envs
from rlx.algorithms import ppo
cfg = ppo.Config(**{{**ppo.preset("brax/hopper"), "env": "brax/hopper"}})
env = envs.make_from_config(cfg)
auto = envs.make_from_config(ppo.Config(env="brax/hopper"))
json.dump({{"backend": cfg.env_backend, "autoreset": env.autoreset, "auto_autoreset": auto.autoreset,
           "obs": list(env.observation_space.shape)}}, open({str(result)!r}, "w"))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "", proc.stdout
    assert "warp" not in proc.stderr.lower(), proc.stderr
    got = json.loads(result.read_text())
    assert got == {"backend": "positional", "autoreset": "cached", "auto_autoreset": "fresh", "obs": [11]}


def test_only_the_warp_notices_are_dropped():
    from rlx.envs import brax_env

    text = ("Failed to import warp: No module named 'warp'\nreal output\n"
            "Failed to import mujoco_warp: No module named 'warp'\nWarning: Failed to import warp is not at the start\n")
    assert brax_env._without_dependency_noise(text) == "real output\nWarning: Failed to import warp is not at the start\n"
