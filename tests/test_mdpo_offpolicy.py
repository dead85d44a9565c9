"""Off-policy MDPO / SAC: c = lam gives SAC's actor loss, tanh-Gaussian log-prob and log-std clip,
old-policy copies, critic targets, replay memory check, smoke runs (gymnax Pendulum, brax)."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import run as R
from rlx.config import ConfigError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "algorithms"))
import mdpo_offpolicy as M  # noqa: E402

pytestmark = pytest.mark.timeout(600)

OBS, ACT, B = 6, 3, 32


def _nets(seed=0):
    actor, q = M.Actor(ACT, (16, 16)), M.DoubleQ((16, 16))
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    o, a = jnp.zeros((1, OBS)), jnp.zeros((1, ACT))
    return actor, actor.init(k1, o), actor.init(k2, o), q, q.init(k3, o, a)


def _inputs(seed=1):
    k1, k2 = jax.random.split(jax.random.PRNGKey(seed))
    return jax.random.normal(k1, (B, OBS)), jax.random.normal(k2, (B, ACT))


@pytest.mark.parametrize("lam", [0.2, 1.0])
def test_actor_loss_with_c_equal_lam_is_sac(lam):
    actor, params, params_old, q, q_params = _nets()
    obs, noise = _inputs()
    q1 = lambda o, a: q.apply(q_params, o, a)[0]
    f_mdpo = lambda p: M.mdpo_actor_loss(p, params_old, actor.apply, q1, obs, noise, lam, lam)[0]
    f_sac = lambda p: M.sac_actor_loss(p, actor.apply, q1, obs, noise, lam)[0]
    np.testing.assert_allclose(float(f_mdpo(params)), float(f_sac(params)), rtol=1e-5, atol=1e-6)
    for a, b in zip(jax.tree.leaves(jax.grad(f_mdpo)(params)), jax.tree.leaves(jax.grad(f_sac)(params))):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # written out by hand: lam log pi(a) - Q1(s, a) + 1e-3 (mean mu^2 + mean log_std^2), a = tanh(mu + sigma xi)
    base = actor.apply(params, obs).distribution
    mu, log_std = np.asarray(base.loc, np.float64), np.log(np.asarray(base.scale_diag, np.float64))
    u = mu + np.exp(log_std) * np.asarray(noise, np.float64)
    logp = np.sum(-0.5 * np.asarray(noise, np.float64) ** 2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - np.tanh(u) ** 2), -1)
    q_ref = np.asarray(q1(obs, jnp.asarray(np.tanh(u), jnp.float32)), np.float64)
    ref = np.mean(lam * logp - q_ref) + 1e-3 * (np.mean(mu**2) + np.mean(log_std**2))
    np.testing.assert_allclose(float(f_sac(params)), ref, rtol=1e-5, atol=1e-5)
    # c != lam is a different loss, and its gradient does not reach theta_k
    f_c = lambda p, po: M.mdpo_actor_loss(p, po, actor.apply, q1, obs, noise, 1.0, 0.2)[0]
    assert abs(float(f_c(params, params_old)) - float(M.sac_actor_loss(params, actor.apply, q1, obs, noise, 0.2)[0])) > 1e-3
    g_old = jax.grad(f_c, argnums=1)(params, params_old)
    assert all(float(jnp.max(jnp.abs(g))) == 0.0 for g in jax.tree.leaves(g_old))


def test_kl_term_vanishes_at_the_old_policy():
    """theta = theta_k: log pi_theta - log pi_k = 0, so J = lam log pi - Q1 in value (not in gradient)."""
    actor, params, _, q, q_params = _nets()
    obs, noise = _inputs()
    q1 = lambda o, a: q.apply(q_params, o, a)[0]
    loss, aux = M.mdpo_actor_loss(params, params, actor.apply, q1, obs, noise, 1.0, 0.2)
    assert float(aux["kl_sample"]) == 0.0
    np.testing.assert_allclose(float(loss), float(M.sac_actor_loss(params, actor.apply, q1, obs, noise, 0.2)[0]), rtol=1e-6)


def test_tanh_log_prob_change_of_variables():
    rng = np.random.default_rng(0)
    mu, log_std = rng.normal(size=(50, ACT)), rng.uniform(-1.5, 0.5, size=(50, ACT))
    u = mu + np.exp(log_std) * rng.normal(size=(50, ACT))
    a = np.tanh(u)
    # naive: density of u minus log |d tanh/du|, per dimension, summed
    ref = np.sum(-0.5 * ((u - mu) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi) - np.log(1 - a**2), -1)
    got = M.tanh_gaussian_log_prob(jnp.asarray(mu, jnp.float32), jnp.asarray(log_std, jnp.float32), jnp.asarray(u, jnp.float32))
    np.testing.assert_allclose(np.asarray(got), ref, rtol=1e-4, atol=1e-4)
    # and distrax's tanh-transformed distribution (via atanh of the action) agrees where that is stable
    import distrax
    dist = distrax.Transformed(distrax.MultivariateNormalDiag(jnp.asarray(mu, jnp.float32), jnp.exp(jnp.asarray(log_std, jnp.float32))),
                               distrax.Block(distrax.Tanh(), ndims=1))
    ok = np.all(np.abs(a) < 0.99, -1)
    np.testing.assert_allclose(np.asarray(dist.log_prob(jnp.asarray(a, jnp.float32)))[ok], ref[ok], rtol=1e-3, atol=1e-3)
    # saturated pre-tanh values stay finite (no atanh(+-1))
    assert np.all(np.isfinite(np.asarray(M.tanh_gaussian_log_prob(jnp.zeros(3), jnp.zeros(3), jnp.array([30.0, -30.0, 0.0])))))


def test_log_std_clip_is_active():
    actor, params, _, _, _ = _nets()
    obs, _ = _inputs()
    for bias, expect in ((50.0, 2.0), (-50.0, -20.0)):
        p = jax.tree.map(lambda x: x, params)
        head = p["params"]["TanhGaussianHead_0"]
        log_std_layer = sorted(k for k in head if k.startswith("Dense"))[1]  # mean first, log-std second
        head[log_std_layer] = {"kernel": jnp.zeros_like(head[log_std_layer]["kernel"]),
                               "bias": jnp.full_like(head[log_std_layer]["bias"], bias)}
        _, log_std = M.policy_params(actor.apply, p, obs)
        np.testing.assert_allclose(np.asarray(log_std), expect, rtol=1e-6)


def test_old_policy_copied_every_m_steps():
    m = 3
    params_old = {"w": jnp.full((2,), -1.0)}
    for step in range(10):
        params = {"w": jnp.full((2,), float(step))}
        new_old = M.refresh_old_policy(jnp.asarray(step), m, params, params_old)
        if step % m == 0:
            np.testing.assert_array_equal(new_old["w"], params["w"])  # equals theta right at the copy
        else:
            np.testing.assert_array_equal(new_old["w"], params_old["w"])  # untouched in between
        params_old = new_old
    np.testing.assert_array_equal(params_old["w"], 9.0)


def test_critic_targets():
    """Q target r + gamma (1 - terminated) V_bar(s') (truncation bootstraps); V target min Q - lam log pi."""
    q, v = M.DoubleQ((8,)), M.VNet((8,))
    o, a = jnp.zeros((1, OBS)), jnp.zeros((1, ACT))
    cp = {"q": q.init(jax.random.PRNGKey(0), o, a), "v": v.init(jax.random.PRNGKey(1), o)}
    obs, act = _inputs()
    rng = np.random.default_rng(2)
    batch = M.Transition(obs, jnp.tanh(act), jnp.asarray(rng.normal(size=B), jnp.float32),
                         jnp.asarray(rng.integers(0, 2, B), jnp.float32), obs[::-1])
    v_next, q_pi_min, logp = (jnp.asarray(rng.normal(size=B), jnp.float32) for _ in range(3))
    _, aux = M.critic_loss(cp, q.apply, v.apply, batch, v_next, q_pi_min, logp, 0.9, 0.2)
    q1, q2 = (np.asarray(x) for x in q.apply(cp["q"], obs, batch.action))
    vv = np.asarray(v.apply(cp["v"], obs))
    y = np.asarray(batch.reward) + 0.9 * (1 - np.asarray(batch.terminated)) * np.asarray(v_next)
    np.testing.assert_allclose(float(aux["q1_loss"]), 0.5 * np.mean((q1 - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(float(aux["q2_loss"]), 0.5 * np.mean((q2 - y) ** 2), rtol=1e-5)
    np.testing.assert_allclose(float(aux["v_loss"]), 0.5 * np.mean((vv - (np.asarray(q_pi_min) - 0.2 * np.asarray(logp))) ** 2), rtol=1e-5)


def test_capacity_never_exceeds_the_run():
    # the replay memory a run needs is checked by the runner against what XLA compiled (tests/test_runner_memory.py)
    assert M.Config(env="Pendulum-v1", total_timesteps=2000, steps_per_update=100).capacity == 2000


def test_config_errors():
    with pytest.raises(ConfigError, match="continuous"):
        M.Config(env="CartPole-v1").validate()
    with pytest.raises(ConfigError, match="less than one update"):
        M.Config(env="Pendulum-v1", total_timesteps=10, steps_per_update=100).validate()


def _small(env, **kw):
    base = dict(total_timesteps=400, steps_per_update=100, learning_starts=150, batch_size=16, hidden=(16, 16),
                old_policy_every=40)
    base.update(kw)
    return M.Config(env=env, **base)


@pytest.mark.parametrize("sac", [False, True])
def test_smoke_pendulum(sac):
    cfg = _small("Pendulum-v1", sac=sac)
    res = R.run(M.Config, M.make_train, cfg, name="mdpo_offpolicy", num_seeds=2, progress=False, eval_episodes=1)
    for row in res.metrics:
        for k in ("actor_loss", "critic_loss", "q1_loss", "v_loss", "logp"):
            assert np.isfinite(row[k]), (k, row)
    assert all(np.isfinite(res.summary["final_return"]))
    ln = res.state.learner
    assert int(ln.grad_steps[0]) == 400 - 150 + 1  # one gradient step per env step once warm-up is over
    assert int(res.state.buffer.size[0]) == 400
    assert all(x.shape[0] == 2 for x in jax.tree.leaves(ln.params_pi))
    # the last copy of theta into theta_k was at gradient step 240: theta_k is a past theta, not the current one
    diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree.leaves(ln.params_pi), jax.tree.leaves(ln.params_old)))
    assert diff > 0


def test_old_policy_stays_initial_when_m_exceeds_the_run():
    cfg = _small("Pendulum-v1", total_timesteps=200, learning_starts=100, old_policy_every=10_000)
    tr = M.make_train(cfg)
    key = jax.random.PRNGKey(0)
    init = tr.init(key)
    final, _ = jax.jit(tr.train)(key)
    for a, b in zip(jax.tree.leaves(init.learner.params_pi), jax.tree.leaves(final.learner.params_old)):
        np.testing.assert_array_equal(a, b)  # copied only at gradient step 0, i.e. the initial policy
    assert any(float(jnp.max(jnp.abs(a - b))) > 0 for a, b in
               zip(jax.tree.leaves(init.learner.params_pi), jax.tree.leaves(final.learner.params_pi)))


def test_smoke_brax():
    cfg = _small("brax/inverted_pendulum", total_timesteps=200, steps_per_update=100, learning_starts=100)
    res = R.run(M.Config, M.make_train, cfg, name="mdpo_offpolicy", num_seeds=1, progress=False, eval_episodes=0)
    assert all(np.isfinite(r["actor_loss"]) and np.isfinite(r["critic_loss"]) for r in res.metrics)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(res.state.learner.params_pi))
