"""One vocabulary, ranges declared once (README "Vocabulary", rlx/config.py).

Walks every algorithm file's `Config`: no retired name comes back, every numeric field declares its
range next to its default, string fields with a fixed set of values declare their choices, and a
value outside a declared range or choice stops in `rlx.config.validate` (and on the command line,
with exit status 2 and nothing written) before anything compiles."""
import dataclasses
import importlib
import os
import pkgutil
import subprocess
import sys

import pytest

import rlx.algorithms
import rlx.config
from rlx.config import ConfigError, flag
from rlx.networks import ACTIVATIONS

ALGORITHMS = sorted(m.name for m in pkgutil.iter_modules(rlx.algorithms.__path__) if not m.name.startswith("_"))

RETIRED = {  # old name -> the name that replaced it
    "ent_coeff": "ent_coef", "entropy_coef": "ent_coef", "kl_coeff": "kl_coef",
    "norm_obs": "normalize_obs", "norm_reward": "normalize_reward", "num_epochs": "update_epochs",
    "lr_linear_decay": "anneal_lr", "bootstrap_truncated": "bootstrap_truncation",
    "hidden_size": "hidden", "num_layers": "hidden", "lamda": "trace_lambda",
    "epsilon_start": "eps_start", "epsilon_end": "eps_finish", "exploration_fraction": "eps_decay",
    "rew_scale": "reward_scale", "actor_lr": "lr", "vf_lr": "critic_lr",
}
RETIRED_IN = {"mdpo_offpolicy": {"sgd_steps": "old_policy_every"}}  # names retired in one file only

# string fields that name something free-form (a path, an env id) or that another module owns
FREE_STRINGS = {"env", "instance_path", "env_backend", "env_autoreset"}


def _config(name):
    return importlib.import_module(f"rlx.algorithms.{name}").Config


def test_every_algorithm_is_walked():
    assert {"ppo", "pqn", "pqn_rnn", "mdpo", "mdpo_offpolicy", "pdppo", "stream_td", "stream_q",
            "stream_ac"} <= set(ALGORITHMS)


@pytest.mark.parametrize("name", ALGORITHMS)
def test_no_retired_field_names(name):
    fields = {f.name for f in dataclasses.fields(_config(name))}
    retired = {**RETIRED, **RETIRED_IN.get(name, {})}
    bad = {old: retired[old] for old in fields & set(retired)}
    assert not bad, f"{name}.Config uses retired names; rename old -> new: {bad}"


@pytest.mark.parametrize("name", ALGORITHMS)
def test_ranges_and_choices_are_declared(name):
    cfg_cls = _config(name)
    missing = []
    for f in dataclasses.fields(cfg_cls):
        meta, default = f.metadata, f.default
        if isinstance(default, bool):
            continue
        if isinstance(default, (int, float, tuple)) and not meta.get("within"):
            missing.append(f"{f.name}: within=")
        if isinstance(default, str) and f.name not in FREE_STRINGS and not meta.get("choices"):
            missing.append(f"{f.name}: choices=")
        if "activation" in f.name:
            assert set(meta.get("choices") or ()) == set(ACTIVATIONS), f"{name}.{f.name} must offer rlx.networks.ACTIVATIONS"
    assert not missing, f"{name}.Config fields without a declared range/choices: {missing}"
    rlx.config.check_fields(cfg_cls())  # the defaults are inside their own ranges


def _outside(within):
    """A value just outside the interval `within`, or None if it is unbounded on both sides."""
    lo, hi, lo_closed, hi_closed = rlx.config._interval(within)
    if lo != float("-inf"):
        return lo - 1 if lo_closed else lo
    if hi != float("inf"):
        return hi + 1 if hi_closed else hi
    return None


@pytest.mark.parametrize("name", ALGORITHMS)
def test_out_of_range_values_raise_config_error_naming_the_flag(name):
    cfg_cls = _config(name)
    cfg = cfg_cls()
    for f in dataclasses.fields(cfg_cls):
        within, choices, default = f.metadata.get("within"), f.metadata.get("choices"), f.default
        if within is not None and _outside(within) is not None and not isinstance(default, bool):
            bad = _outside(within)
            if isinstance(default, tuple):
                bad = (int(bad),) + default[1:]
            elif isinstance(default, int):
                bad = int(bad)
            with pytest.raises(ConfigError, match=flag(f.name)):
                rlx.config.validate(dataclasses.replace(cfg, **{f.name: bad}))
        if choices is not None:
            with pytest.raises(ConfigError, match=flag(f.name)):
                rlx.config.validate(dataclasses.replace(cfg, **{f.name: "no-such-choice"}))


def test_validate_keeps_cross_field_checks():
    from rlx.algorithms import ppo, stream_q
    with pytest.raises(ConfigError, match="num-minibatches"):
        rlx.config.validate(ppo.Config(num_envs=3, num_steps=5, num_minibatches=4))
    with pytest.raises(ConfigError, match="eps-finish"):
        rlx.config.validate(stream_q.Config(eps_start=0.1, eps_finish=0.5))
    with pytest.raises(ConfigError, match=r"--gamma must be in \[0, 1\] \(got 1.5\)"):
        rlx.config.validate(ppo.Config(gamma=1.5))


def test_cli_refuses_an_unknown_activation_before_writing_anything(tmp_path):
    out = tmp_path / "run"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    proc = subprocess.run([sys.executable, os.path.join(root, "algorithms", "ppo.py"), "--activation", "sigmoidx",
                           "--total-timesteps", "1024", "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--activation" in proc.stderr and all(a in proc.stderr for a in ACTIVATIONS), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (out / "config.json").exists() and not (out / "metrics.csv").exists()
