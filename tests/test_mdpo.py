"""On-policy MDPO: KL direction and anchor, analytic KL, t_k schedule, full-batch steps,
clipped value loss, smoke runs (gymnax discrete/continuous, brax) and CartPole learning."""
import os
import sys
import time

import distrax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rlx import run as R

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "algorithms"))
import mdpo  # noqa: E402

pytestmark = pytest.mark.timeout(600)


def _actor(kind="continuous", shape=3, obs_dim=5, seed=0):
    actor = mdpo.Actor(kind, shape, (16, 16), "tanh")
    params = actor.init(jax.random.PRNGKey(seed), jnp.zeros((1, obs_dim)))
    return actor, params


def _perturb(params, key, scale=0.3):
    leaves, tdef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tdef, [x + scale * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)])


def _batch(kind, shape, n=64, obs_dim=5, seed=1):
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    obs = jax.random.normal(k1, (n, obs_dim))
    acts = jax.random.randint(k2, (n,), 0, shape) if kind == "discrete" else jax.random.normal(k2, (n, shape))
    adv = jax.random.normal(k3, (n,))
    return obs, acts, adv


def test_tk_schedule_linear_with_floor():
    K = 10
    t = np.asarray([float(mdpo.tk_schedule(k, K, 1.0 / K)) for k in range(15)])
    assert t[0] == 1.0
    np.testing.assert_allclose(t[:10], 1.0 - np.arange(10) / K, rtol=1e-6)  # linear, slope -1/K
    np.testing.assert_allclose(t[9:], 0.1, rtol=1e-6)  # clamped at 1/K from k = K-1 on, never below
    assert np.all(t > 0)
    t20 = np.asarray([float(mdpo.tk_schedule(k, 20, 0.05)) for k in range(25)])
    np.testing.assert_allclose(t20[5], 0.75, rtol=1e-6)  # horizon follows K
    assert t20.min() == pytest.approx(0.05)


def test_make_train_horizon_defaults_to_iterations_and_follows_tk_horizon():
    def t_ks(**kw):
        cfg = mdpo.Config(env="CartPole-v1", num_envs=2, num_steps=8, total_timesteps=64, sgd_steps=1,
                          vf_epochs=1, vf_minibatch_size=8, hidden=(8,), **kw)
        tr = mdpo.make_train(cfg)
        _, m = jax.jit(tr.train)(jax.random.PRNGKey(0))
        return np.asarray(m["t_k"])

    np.testing.assert_allclose(t_ks(), [1.0, 0.75, 0.5, 0.25], rtol=1e-6)  # K = 4 iterations, floor 1/4
    np.testing.assert_allclose(t_ks(tk_horizon=8), [1.0, 0.875, 0.75, 0.625], rtol=1e-6)
    np.testing.assert_allclose(t_ks(tk_horizon=2, tk_min=0.3), [1.0, 0.5, 0.3, 0.3], rtol=1e-6)


@pytest.mark.parametrize("kind,shape", [("continuous", 3), ("discrete", 4)])
def test_kl_gradient_vanishes_at_the_anchor(kind, shape):
    actor, params = _actor(kind, shape)
    params = _perturb(params, jax.random.PRNGKey(3))
    obs, acts, adv = _batch(kind, shape)

    def pg_only(p):
        ratio = jnp.exp(actor.apply(p, obs).log_prob(acts) - jax.lax.stop_gradient(actor.apply(params, obs).log_prob(acts)))
        return -jnp.mean(ratio * adv)

    g_full = jax.grad(lambda p: mdpo.policy_loss(p, params, actor.apply, obs, acts, adv, 0.05)[0])(params)
    g_pg = jax.grad(pg_only)(params)
    for a, b in zip(jax.tree.leaves(g_full), jax.tree.leaves(g_pg)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # away from the anchor the KL term does contribute (the test above is not vacuous)
    other = _perturb(params, jax.random.PRNGKey(4), 0.1)
    g_other = jax.grad(lambda p: mdpo.policy_loss(p, other, actor.apply, obs, acts, adv, 0.05)[0])(params)
    assert max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(g_other), jax.tree.leaves(g_pg))) > 1e-3


def test_kl_direction_is_new_to_old():
    """Same means, sigma_new = 2, sigma_old = 1: KL(new||old) = log(1/2) + 4/2 - 1/2 ~ 0.807 per dim,
    KL(old||new) = log 2 + 1/8 - 1/2 ~ 0.318 per dim."""
    actor, params_old = _actor("continuous", 3)
    params_new = jax.tree.map(lambda x: x, params_old)
    params_new["params"]["GaussianHead_0"]["log_std"] = jnp.full((3,), np.log(2.0), jnp.float32)
    obs, acts, _ = _batch("continuous", 3)
    t_k = 0.5
    loss, aux = mdpo.policy_loss(params_new, params_old, actor.apply, obs, acts, jnp.zeros(obs.shape[0]), t_k)

    def kl(s1, s2):  # naive 1-D Gaussian KL(N(0, s1) || N(0, s2))
        return np.log(s2 / s1) + s1**2 / (2 * s2**2) - 0.5

    np.testing.assert_allclose(float(aux["kl"]), 3 * kl(2.0, 1.0), rtol=1e-5)
    np.testing.assert_allclose(float(loss), 3 * kl(2.0, 1.0) / t_k, rtol=1e-5)
    assert abs(float(aux["kl"]) - 3 * kl(1.0, 2.0)) > 0.5


def test_categorical_kl_direction():
    actor, params_old = _actor("discrete", 4)
    params_new = _perturb(params_old, jax.random.PRNGKey(7), 0.5)
    obs, acts, _ = _batch("discrete", 4)
    _, aux = mdpo.policy_loss(params_new, params_old, actor.apply, obs, acts, jnp.zeros(obs.shape[0]), 1.0)
    p = np.asarray(jax.nn.softmax(actor.apply(params_new, obs).logits), np.float64)
    q = np.asarray(jax.nn.softmax(actor.apply(params_old, obs).logits), np.float64)
    np.testing.assert_allclose(float(aux["kl"]), np.mean(np.sum(p * np.log(p / q), -1)), rtol=1e-4)
    assert not np.isclose(float(aux["kl"]), np.mean(np.sum(q * np.log(q / p), -1)), rtol=1e-2)


def test_analytic_gaussian_kl_matches_monte_carlo():
    p = distrax.MultivariateNormalDiag(jnp.array([0.3, -1.0, 0.0]), jnp.array([0.5, 1.5, 1.0]))
    q = distrax.MultivariateNormalDiag(jnp.array([0.0, -0.5, 0.4]), jnp.array([1.0, 1.0, 0.7]))
    x = p.sample(seed=jax.random.PRNGKey(0), sample_shape=(1_000_000,))
    d = p.log_prob(x) - q.log_prob(x)
    mc, se = float(d.mean()), float(d.std()) / 1000.0
    assert abs(float(p.kl_divergence(q)) - mc) < 4 * se + 1e-4


def test_policy_steps_are_full_batch_adam_steps_anchored_at_the_start():
    actor, params = _actor("continuous", 2)
    obs, acts, adv = _batch("continuous", 2, n=48)
    tx = optax.chain(optax.clip_by_global_norm(0.5), optax.adam(3e-3, eps=1e-5))
    opt = tx.init(params)
    t_k = 0.7
    p1, o1, _ = mdpo.policy_steps(params, opt, tx, actor.apply, obs, acts, adv, t_k, 1)
    g = jax.grad(lambda p: mdpo.policy_loss(p, params, actor.apply, obs, acts, adv, t_k)[0])(params)
    u, o_ref = tx.update(g, opt, params)
    p_ref = optax.apply_updates(params, u)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # m = 3: three full-batch steps, each with the KL anchored at the incoming params (pi_k)
    p3, _, _ = mdpo.policy_steps(params, opt, tx, actor.apply, obs, acts, adv, t_k, 3)
    p, o = params, opt
    for _ in range(3):
        g = jax.grad(lambda q: mdpo.policy_loss(q, params, actor.apply, obs, acts, adv, t_k)[0])(p)
        u, o = tx.update(g, o, p)
        p = optax.apply_updates(p, u)
    for a, b in zip(jax.tree.leaves(p3), jax.tree.leaves(p)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_clipped_value_loss():
    rng = np.random.default_rng(0)
    v, r = rng.normal(size=100).astype(np.float32), rng.normal(size=100).astype(np.float32)
    np.testing.assert_allclose(float(mdpo.value_loss(v, v, r, 0.2)), 0.5 * np.mean((v - r) ** 2), rtol=1e-6)
    v_old = v + rng.normal(size=100).astype(np.float32)
    ref = np.mean([max((a - t) ** 2, (o + np.clip(a - o, -0.2, 0.2) - t) ** 2) for a, o, t in zip(v, v_old, r)]) / 2
    np.testing.assert_allclose(float(mdpo.value_loss(v, v_old, r, 0.2)), ref, rtol=1e-5)


def test_config_errors():
    from rlx.config import ConfigError

    with pytest.raises(ConfigError, match="vf-minibatch-size"):
        mdpo.Config(env="CartPole-v1", num_envs=3, num_steps=10).validate()
    with pytest.raises(ConfigError, match="unknown environment"):
        mdpo.Config(env="CartPol-v1").validate()
    with pytest.raises(ConfigError, match="total-timesteps"):
        mdpo.Config(env="CartPole-v1", total_timesteps=100).validate()


def _small(env, **kw):
    base = dict(num_envs=2, num_steps=32, total_timesteps=128, sgd_steps=2, vf_epochs=2, vf_minibatch_size=16,
                hidden=(16, 16))
    base.update(kw)
    return mdpo.Config(env=env, **base)


@pytest.mark.parametrize("env", ["CartPole-v1", "Pendulum-v1"])
def test_smoke_gymnax(env):
    res = R.run(mdpo.Config, mdpo.make_train, _small(env), name="mdpo", num_seeds=2, progress=False, eval_episodes=2)
    assert len(res.metrics) > 0
    for row in res.metrics:
        for k in ("policy_loss", "value_loss", "kl", "t_k", "entropy"):
            assert np.isfinite(row[k]), (k, row)
        # KL(pi_theta || pi_k) after the policy steps: >= 0, and > 0 (the steps moved the policy)
        assert row["kl"] > 0 and 0 < row["t_k"] <= 1 and row["value_loss"] >= 0, row
        if env == "CartPole-v1":
            assert 0 < row["entropy"] <= np.log(2) + 1e-6, row
    t_k = [row["t_k"] for row in res.metrics]
    assert t_k == sorted(t_k, reverse=True) and t_k[0] > t_k[-1], t_k  # annealed, never raised
    assert all(np.isfinite(res.summary["final_return"]))
    leaves = jax.tree.leaves(res.state.params_pi)
    assert all(x.shape[0] == 2 for x in leaves)
    assert any(not np.array_equal(x[0], x[1]) for x in leaves)  # the two seeds are independent runs


def test_smoke_brax():
    cfg = _small("brax/inverted_pendulum", num_envs=2, num_steps=16, total_timesteps=64)
    res = R.run(mdpo.Config, mdpo.make_train, cfg, name="mdpo", num_seeds=1, progress=False, eval_episodes=0)
    assert all(np.isfinite(r["policy_loss"]) and np.isfinite(r["value_loss"]) for r in res.metrics)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(res.state.params_pi))


def test_learns_cartpole_4_seeds():
    """CartPole preset (4 envs x 128 steps, m = 10): mean final greedy return over 4 seeds >= 475
    at 5e5 steps (a vmapped multi-seed run; the timeout fails an XLA CPU hang)."""
    cfg = mdpo.Config(env="CartPole-v1", **mdpo.preset("CartPole-v1"))
    assert cfg.total_timesteps == 500_000
    t0 = time.time()
    res = R.run(mdpo.Config, mdpo.make_train, cfg, name="mdpo", num_seeds=4, progress=False)
    print(f"MDPO CartPole 4 seeds x 5e5 steps: {time.time() - t0:.1f} s, final {res.summary['final_return']}")
    assert res.summary["final_return_mean"] >= 475, res.summary["final_return"]
