"""Env presets through the command line, for every algorithm: `--env E` gives the Config defaults
overridden by `preset(E)`, and an explicit flag wins over a preset value (behaviour, not the values:
what a preset holds is each algorithm's choice; this checks that the CLI applies it and lets the
user override every field of it). The runner is replaced by a stub, so nothing compiles."""
import dataclasses
import importlib

import jax
import pytest

from rlx import cli

# (algorithm, env): every env family a preset distinguishes, and each algorithm's default env
CASES = [
    ("ppo", "brax/hopper"), ("ppo", "Pendulum-v1"), ("ppo", "CartPole-v1"),
    ("mdpo", "CartPole-v1"), ("mdpo", "Breakout-MinAtar"), ("mdpo", "Pendulum-v1"), ("mdpo", "brax/hopper"),
    ("mdpo_offpolicy", "Pendulum-v1"), ("mdpo_offpolicy", "brax/hopper"),
    ("pdppo", "frozen-lake-pd"), ("pdppo", "lot-sizing/15x5"),
    ("pqn", "Breakout-MinAtar"), ("pqn", "CartPole-v1"),
    ("pqn_rnn", "MemoryChain-bsuite"), ("pqn_rnn", "CartPole-v1"),
    ("stream_ac", "Breakout-MinAtar"), ("stream_ac", "CartPole-v1"), ("stream_ac", "Pendulum-v1"),
    ("stream_q", "Breakout-MinAtar"), ("stream_q", "CartPole-v1"),
    ("stream_td", "Breakout-MinAtar"), ("stream_td", "Pendulum-v1"),
]


def _cli_config(monkeypatch, mod, name, argv):
    import rlx.run

    jax.devices()  # backends up: cli.main then leaves XLA_FLAGS alone in this process
    seen = []
    monkeypatch.setattr(rlx.run, "run", lambda cfg_cls, make_train, cfg, **kw: seen.append(cfg))
    cli.main(mod.Config, mod.make_train, name, mod.preset, argv=argv)
    assert len(seen) == 1
    return seen[0]


def _other(f: dataclasses.Field, v):
    """A value of the field's type that differs from v (None: no other value to give)."""
    if isinstance(v, bool):
        return not v
    if isinstance(v, int):
        return v + 1
    if isinstance(v, float):
        return v / 2 if v else 0.5
    if isinstance(v, tuple):
        return tuple(x + 1 for x in v)
    choices = [c for c in (f.metadata.get("choices") or ()) if c != v]
    return choices[0] if choices else None


def _flag(name, value):
    flag = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return [flag if value else "--no-" + name.replace("_", "-")]
    return [flag, ",".join(map(str, value)) if isinstance(value, tuple) else repr(value) if isinstance(value, float) else str(value)]


@pytest.mark.parametrize("name,env", CASES, ids=[f"{a}-{e}" for a, e in CASES])
def test_env_preset_applies_and_explicit_flags_win(monkeypatch, name, env):
    mod = importlib.import_module(f"rlx.algorithms.{name}")
    preset = mod.preset(env)
    fields = {f.name: f for f in dataclasses.fields(mod.Config)}
    assert set(preset) <= set(fields), f"{name}.preset({env!r}) names fields the Config lacks"
    want = dataclasses.replace(mod.Config(), env=env, **preset)
    assert _cli_config(monkeypatch, mod, name, ["--env", env]) == want

    # every preset field given explicitly with another value: each flag wins, nothing else changes
    flags = {k: _other(fields[k], v) for k, v in preset.items()}
    flags = {k: v for k, v in flags.items() if v is not None}
    if not flags:
        return
    argv = ["--env", env] + [x for k, v in flags.items() for x in _flag(k, v)]
    assert _cli_config(monkeypatch, mod, name, argv) == dataclasses.replace(want, **flags)


def test_some_preset_changes_the_defaults():
    """The presets are not all empty (otherwise the test above checks nothing about them)."""
    changed = 0
    for name, env in CASES:
        mod = importlib.import_module(f"rlx.algorithms.{name}")
        d = mod.Config()
        changed += any(getattr(d, k) != v for k, v in mod.preset(env).items())
    assert changed >= 8
