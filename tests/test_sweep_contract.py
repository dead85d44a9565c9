"""The sweep contract (rlx/config.py, rlx/train.py): inside `make_train` any non-static `field()`
may be a traced JAX scalar. For every algorithm, one float field is swept over two values through
`rlx.run.run`: both runs must finish with finite metrics, differ (each run really used its own
value), and the training program must be traced as often as for a minimal algorithm, i.e. once
per compiled program for both values together, never once per value."""
import dataclasses
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toy_algo
from rlx import run as R
from rlx.config import is_static, with_values

pytestmark = pytest.mark.timeout(600)

# algorithm -> (tiny config, swept float field, its two values); the defaults are never swept values
CASES = {
    "ppo": (dict(env="CartPole-v1", total_timesteps=32, num_envs=2, num_steps=8, num_minibatches=2, update_epochs=1,
                 hidden=(8,)), "lr", [1e-3, 3e-2]),
    "pdppo": (dict(env="frozen-lake-pd", total_timesteps=20, num_envs=2, num_steps=10, buffer_chunks=1, update_epochs=1,
                   actor_hidden=(8,), critic_hidden=(8,)), "lr", [1e-3, 3e-2]),
    "mdpo": (dict(env="CartPole-v1", total_timesteps=32, num_envs=2, num_steps=8, sgd_steps=1, vf_epochs=1,
                  vf_minibatch_size=8, hidden=(8,)), "lr", [1e-3, 3e-2]),
    "mdpo_offpolicy": (dict(env="Pendulum-v1", total_timesteps=40, steps_per_update=20, learning_starts=10,
                            batch_size=8, buffer_size=64, hidden=(8,)), "lr", [1e-3, 3e-2]),
    "pqn": (dict(env="CartPole-v1", total_timesteps=32, num_envs=2, num_steps=8, num_minibatches=2, update_epochs=1,
                 hidden=(8,)), "lr", [1e-3, 3e-2]),
    "pqn_rnn": (dict(env="CartPole-v1", total_timesteps=32, num_envs=2, num_steps=8, memory_window=2,
                     num_minibatches=2, update_epochs=1, hidden=(8,)), "lr", [1e-3, 3e-2]),
    "stream_td": (dict(env="Pendulum-v1", total_timesteps=16, hidden=(8,)), "lr", [0.5, 2.0]),
    "stream_q": (dict(env="CartPole-v1", total_timesteps=16, hidden=(8,)), "lr", [0.5, 2.0]),
    "stream_ac": (dict(env="Pendulum-v1", total_timesteps=16, hidden=(8,)), "lr", [0.5, 2.0]),
}
RUN = dict(num_seeds=1, progress=False, out=None, eval_episodes=0, log_every=10**9)  # one chunk, no evaluation


def _counting(make_train, field):
    """make_train that records, per call, the swept field's value or "traced"."""
    calls = []

    def wrapped(cfg):
        v = getattr(cfg, field)
        calls.append("traced" if isinstance(v, jax.core.Tracer) else v)
        return make_train(cfg)

    return wrapped, calls


@pytest.fixture(scope="module")
def traces_per_run():
    """How often the runner traces make_train for a sweep of two values in one chunk: the minimal algorithm."""
    make_train, calls = _counting(toy_algo.make_train, "lr")
    cfg = toy_algo.Config(total_timesteps=64, num_envs=2, num_steps=8)
    res = R.run(toy_algo.Config, make_train, cfg, name="toy", sweep={"lr": [0.2, 0.5]}, **RUN)
    assert len(res.runs) == 2
    return calls.count("traced")


def test_every_algorithm_has_a_case():
    import pkgutil
    import rlx.algorithms
    names = {m.name for m in pkgutil.iter_modules(rlx.algorithms.__path__) if not m.name.startswith("_")}
    assert names == set(CASES), f"add a sweep case for {sorted(names - set(CASES))}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_sweepable_field_may_be_a_tracer(name):
    """init and one update trace under vmap with every non-static numeric field traced at once."""
    mod = importlib.import_module(f"rlx.algorithms.{name}")
    cfg = mod.Config(**CASES[name][0])
    swept = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
             if not is_static(type(cfg), f.name) and type(getattr(cfg, f.name)) in (int, float)}
    assert CASES[name][1] in swept
    hp = {k: jnp.asarray([v, v], jnp.float32 if isinstance(v, float) else jnp.int32) for k, v in swept.items()}

    def one(key, hpv):
        t = mod.make_train(with_values(cfg, **hpv))
        return t.update(t.init(key))[1]

    metrics = jax.eval_shape(jax.vmap(one), jax.random.split(jax.random.PRNGKey(0), 2), hp)
    assert all(m.shape == (2,) for m in jax.tree.leaves(metrics))


@pytest.mark.parametrize("name", sorted(CASES))
def test_sweeping_a_float_field_compiles_once(name, traces_per_run):
    mod = importlib.import_module(f"rlx.algorithms.{name}")
    kw, field, values = CASES[name]
    cfg = mod.Config(**kw)
    assert isinstance(getattr(cfg, field), float) and getattr(cfg, field) not in values
    make_train, calls = _counting(mod.make_train, field)
    res = R.run(mod.Config, make_train, cfg, name=name, sweep={field: values}, **RUN)

    # one program for both values: make_train never sees a swept value as a Python number, and is
    # traced exactly as often as the minimal algorithm's (once per compiled program)
    assert all(c == "traced" or c == getattr(cfg, field) for c in calls), calls
    assert calls.count("traced") == traces_per_run, calls

    # both runs finished, with finite metrics, and each used its own value
    assert [r[field] for r in res.runs] == values
    assert res.metrics, "no metrics"
    for row in res.metrics:
        for k, v in row.items():
            if isinstance(v, float) and not any(s in k for s in ("episode", "return", "eval")):  # NaN: no episode ended
                assert np.isfinite(v), (k, row)
    leaves = [x for x in jax.tree.leaves(res.state) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]
    assert leaves and all(bool(jnp.all(jnp.isfinite(x))) for x in leaves)
    assert any(not np.array_equal(np.asarray(x[0]), np.asarray(x[1])) for x in leaves), \
        f"the two {field} values gave identical final states"
