"""Stream-x algorithms end to end: vmapped learners are independent and match unbatched runs,
smoke runs of stream_td / stream_q (CartPole, MinAtar) / stream_ac (Pendulum, CartPole), and
config errors. The math of the pieces is tested in test_stream_x.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytestmark = pytest.mark.timeout(600)


# --------------------------------------------------------------------------------------------
# whole algorithms: smoke runs and vmap equivalence


def _smoke(module, steps=300, n=2, **kw):
    cfg = module.Config(**{**module.preset(kw.get("env", module.Config.env)), **kw, "total_timesteps": steps})
    cfg.validate()
    train = module.make_train(cfg)
    state, metrics = jax.jit(jax.vmap(train.train))(jax.random.split(jax.random.PRNGKey(0), n))
    for k in ("episode_return_sum", "episode_count", "episode_length_sum"):
        assert metrics[k].shape == (n, steps) and metrics[k].dtype == jnp.float32
    for k, v in metrics.items():
        assert np.all(np.isfinite(np.asarray(v))), k
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(state) if jnp.issubdtype(x.dtype, jnp.floating))
    return state, metrics


def test_stream_q_vmap_learners_independent_and_equal_sequential():
    """Vmapped learners do not interact (changing one learner's key leaves the others
    bit-identical) and match unbatched runs (to float rounding: batched and unbatched matmuls
    round differently, and a learner's chaotic dynamics amplify that over long runs)."""
    from rlx.algorithms import stream_q

    cfg = stream_q.Config(total_timesteps=150, eps_decay=0.2, overshooting_info=True)
    train = stream_q.make_train(cfg)
    keys = jax.random.split(jax.random.PRNGKey(3), 4)
    run_v = jax.jit(jax.vmap(train.train))
    state_v, m_v = run_v(keys)
    state_w, m_w = run_v(keys.at[0].set(jax.random.PRNGKey(99)))
    for a, b in zip(jax.tree_util.tree_leaves((state_v, m_v)), jax.tree_util.tree_leaves((state_w, m_w))):
        np.testing.assert_array_equal(np.asarray(a)[1:], np.asarray(b)[1:])
    assert not np.array_equal(np.asarray(state_v.obs)[0], np.asarray(state_w.obs)[0])
    one = jax.jit(train.train)
    for i in (0, 3):
        state_i, m_i = one(keys[i])
        for a, b in zip(jax.tree_util.tree_leaves(state_i), jax.tree_util.tree_leaves(state_v)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b)[i], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(np.asarray(m_i["episode_count"]), np.asarray(m_v["episode_count"])[i])
    assert float(m_v["episode_count"].sum()) > 0
    assert np.all(np.asarray(m_v["step_size"]) > 0)
    assert set(np.unique(np.asarray(m_v["overshoot"]))) <= {0.0, 1.0}


def test_stream_q_minatar_smoke():
    from rlx.algorithms import stream_q

    state, _ = _smoke(stream_q, steps=100, env="Breakout-MinAtar")
    assert state.obs.shape == (2, 10, 10, 4)


def test_stream_td_smoke():
    from rlx.algorithms import stream_td

    _, m = _smoke(stream_td, steps=600, env="CartPole-v1", overshooting_info=True)
    assert float(m["value_error_count"].sum()) == float(m["episode_length_sum"].sum())


@pytest.mark.parametrize("env", ["Pendulum-v1", "CartPole-v1"])
def test_stream_ac_smoke(env):
    from rlx.algorithms import stream_ac

    state, m = _smoke(stream_ac, steps=300, env=env, overshooting_info=True)
    assert np.all(np.asarray(m["entropy"]) > -10)


def test_config_errors():
    import rlx.config
    from rlx.algorithms import stream_ac, stream_q
    from rlx.config import ConfigError

    with pytest.raises(ConfigError, match="discrete"):
        stream_q.Config(env="Pendulum-v1").validate()
    with pytest.raises(ConfigError, match="time-feature"):
        stream_q.Config(env="Breakout-MinAtar").validate()
    with pytest.raises(ConfigError, match="trace-lambda"):
        rlx.config.validate(stream_ac.Config(env="Pendulum-v1", trace_lambda=1.5))
    assert stream_q.preset("Breakout-MinAtar")["time_feature"] is False
    assert stream_ac.preset("CartPole-v1")["hidden"] == (32, 32)
