"""PQN (algorithms/pqn.py): Q(lambda) targets against a naive recursion, rollout/learn pieces,
schedules, config errors, smoke runs on CartPole and MinAtar, and the CartPole learning check."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.algorithms import pqn
import rlx.config
from rlx.config import ConfigError

pytestmark = pytest.mark.timeout(600)

SMALL = dict(total_timesteps=8 * 16 * 6, num_envs=8, num_steps=16, num_minibatches=4, update_epochs=2,
             hidden=(32, 32))


# ---------------------------------------------------------------------------------------------
# Q(lambda) targets: the equations of the spec, one env and one step at a time


def naive_targets(r, q, last_next_q, term, trunc, trunc_next_q, gamma, lam):
    """R_t = r_t + g(1-term_t)[(1-lam) Q*(s_{t+1}) + lam R_{t+1}] inside an episode,
    R_t = r_t + g(1-term_t) Q*(s_{t+1}) at an episode end or t = T-1, with
    Q*(s_{t+1}) = max q[t+1] inside the rollout, last_next_q at T-1, trunc_next_q[t] on truncation."""
    T, N, _ = q.shape
    R = np.zeros((T, N))
    for n in range(N):
        for t in reversed(range(T)):
            if trunc[t, n]:
                nq = trunc_next_q[t, n]
            elif t == T - 1:
                nq = last_next_q[n]
            else:
                nq = max(q[t + 1, n])
            boot = 0.0 if term[t, n] else nq
            if term[t, n] or trunc[t, n] or t == T - 1:
                R[t, n] = r[t, n] + gamma * boot
            else:
                R[t, n] = r[t, n] + gamma * (1 - term[t, n]) * ((1 - lam) * nq + lam * R[t + 1, n])
    return R


def random_case(seed, T=12, N=6, A=3, p_term=0.15, p_trunc=0.1):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=(T, N)).astype(np.float32)
    q = rng.normal(size=(T, N, A)).astype(np.float32)
    last = rng.normal(size=(N,)).astype(np.float32)
    tq = rng.normal(size=(T, N)).astype(np.float32)
    term = rng.random((T, N)) < p_term
    trunc = (rng.random((T, N)) < p_trunc) & ~term
    term[T // 2, 0] = True  # a termination mid-rollout
    term[T - 1, 1], trunc[T - 1, 1] = True, False  # ... and at T-1
    trunc[T // 3, 2], term[T // 3, 2] = True, False  # a truncation mid-rollout
    trunc[T - 1, 3], term[T - 1, 3] = True, False  # ... and at T-1
    term[:, 4] = trunc[:, 4] = False  # one env without any episode end
    return r, q, last, term, trunc, tq


def targets(r, q, last, term, trunc, tq, gamma, lam):
    out = pqn.q_lambda_targets(jnp.asarray(r), jnp.asarray(q), jnp.asarray(last), jnp.asarray(term, jnp.float32),
                               jnp.asarray(trunc, jnp.float32), jnp.asarray(tq), gamma, lam)
    return np.asarray(out)


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.65, 0.95, 1.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_q_lambda_targets_match_naive_recursion(lam, seed):
    case = random_case(seed)
    np.testing.assert_allclose(targets(*case, 0.99, lam), naive_targets(*case, 0.99, lam), rtol=1e-5, atol=1e-5)


def test_seeding_uses_q_of_the_state_after_t_minus_2():
    """purejaxql issue #12: the step T-2 must bootstrap from max q_val[T-1], not from max Q(s_T)."""
    T, N, A = 5, 1, 2
    r = np.zeros((T, N), np.float32)
    q = np.zeros((T, N, A), np.float32)
    q[T - 1, 0] = [3.0, -1.0]  # max Q(s_{T-1}) = 3
    last = np.array([10.0], np.float32)  # max Q(s_T) = 10
    none = np.zeros((T, N), bool)
    gamma, lam = 0.9, 0.5
    R = targets(r, q, last, none, none, np.zeros((T, N), np.float32), gamma, lam)
    assert R[T - 1, 0] == pytest.approx(gamma * 10.0)
    want = gamma * ((1 - lam) * 3.0 + lam * R[T - 1, 0])
    buggy = gamma * ((1 - lam) * 10.0 + lam * R[T - 1, 0])
    assert R[T - 2, 0] == pytest.approx(want, rel=1e-6)
    assert abs(R[T - 2, 0] - buggy) > 1.0


def test_lambda_limits():
    r, q, last, term, trunc, tq = random_case(7, T=15, N=6)
    gamma = 0.97
    # lambda = 0: one-step Q-learning targets
    nq = np.concatenate([q[1:].max(-1), last[None]], 0)
    nq = np.where(trunc, tq, nq)
    np.testing.assert_allclose(targets(r, q, last, term, trunc, tq, gamma, 0.0),
                               r + gamma * (1 - term) * nq, rtol=1e-5, atol=1e-5)
    # lambda = 1: discounted reward sum to the episode end (or rollout end), bootstrapped only at
    # a truncation or at T-1
    T, N = r.shape
    want = np.zeros((T, N))
    for n in range(N):
        for t in range(T):
            g, disc = 0.0, 1.0
            for u in range(t, T):
                g += disc * r[u, n]
                disc *= gamma
                if term[u, n]:
                    break
                if trunc[u, n]:
                    g += disc * tq[u, n]
                    break
                if u == T - 1:
                    g += disc * last[n]
            want[t, n] = g
    np.testing.assert_allclose(targets(r, q, last, term, trunc, tq, gamma, 1.0), want, rtol=1e-4, atol=1e-4)


def test_target_is_reward_exactly_at_terminations():
    r, q, last, term, trunc, tq = random_case(3)
    R = targets(r, q, last, term, trunc, tq, 0.99, 0.65)
    assert term.sum() >= 2
    np.testing.assert_array_equal(R[term], r[term])


# ---------------------------------------------------------------------------------------------
# the pieces of one update on a real env


@pytest.fixture(scope="module")
def cartpole():
    cfg = pqn.Config(**SMALL)
    p = pqn.build(cfg)
    ts = p.init(jax.random.PRNGKey(0))
    ts, traj, eps = jax.jit(p.rollout)(ts)
    return cfg, p, ts, traj


def test_rollout_caches_q_of_each_observation(cartpole):
    cfg, p, ts, traj = cartpole
    assert traj.q_val.shape == (cfg.num_steps, cfg.num_envs, 2)
    np.testing.assert_allclose(traj.q_val, p.q_fn(ts.params, traj.obs), rtol=1e-5, atol=1e-5)
    # the true next state is the next stored observation except where the episode ended
    done = np.asarray(traj.terminated | traj.truncated)
    assert done.any() and not done.all()
    same = np.all(np.asarray(traj.next_obs[:-1]) == np.asarray(traj.obs[1:]), axis=-1)
    np.testing.assert_array_equal(same, ~done[:-1])
    np.testing.assert_array_equal(traj.next_obs[-1][~done[-1]], ts.obs[~done[-1]])
    # epsilon = 1 at the first update: actions are uniform, not greedy
    greedy = np.asarray(traj.q_val.argmax(-1) == traj.action).mean()
    assert 0.3 < greedy < 0.7


def test_targets_bootstrap_from_final_observation_on_truncation(cartpole):
    cfg, p, ts, traj = cartpole
    rng = np.random.default_rng(0)
    trunc = np.zeros(traj.truncated.shape, bool)
    trunc[3, :4] = True  # pretend time limits hit here
    trunc &= ~np.asarray(traj.terminated)
    next_obs = np.asarray(traj.next_obs).copy()
    next_obs[3, :4] = rng.normal(size=next_obs[3, :4].shape)  # a final observation != the next stored obs
    t2 = traj._replace(truncated=jnp.asarray(trunc), next_obs=jnp.asarray(next_obs))
    got = np.asarray(p.targets(ts.params, t2))
    max_next = np.asarray(p.q_fn(ts.params, jnp.asarray(next_obs)).max(-1))
    want = naive_targets(np.asarray(traj.reward) * cfg.reward_scale, np.asarray(traj.q_val), max_next[-1],
                         np.asarray(traj.terminated), trunc, max_next, cfg.gamma, cfg.q_lambda)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    # purejaxql's rule: a truncation is a termination (target = reward)
    p_old = pqn.build(dataclasses.replace(cfg, bootstrap_truncation=False))
    got_old = np.asarray(p_old.targets(ts.params, t2))
    done = np.asarray(traj.terminated) | trunc
    want_old = naive_targets(np.asarray(traj.reward) * cfg.reward_scale, np.asarray(traj.q_val), max_next[-1],
                             done, np.zeros_like(trunc), max_next, cfg.gamma, cfg.q_lambda)
    np.testing.assert_allclose(got_old, want_old, rtol=1e-4, atol=1e-5)


def test_minibatches_pair_obs_actions_and_targets_and_targets_stay_frozen(cartpole):
    """With (practically) frozen params, every epoch's minibatch losses add up to
    num_minibatches x the full-batch loss: one permutation is applied to all fields."""
    cfg, _, ts, traj = cartpole
    cfg0 = dataclasses.replace(cfg, lr=1e-30, anneal_lr=False)
    p = pqn.build(cfg0)
    target = p.targets(ts.params, traj)
    B = cfg.num_envs * cfg.num_steps
    data = (traj.obs.reshape(B, -1), traj.action.reshape(B), target.reshape(B))
    params, _, loss, _ = jax.jit(p.learn)(ts.params, p.tx.init(ts.params), jax.random.PRNGKey(3), data)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-20), params, ts.params)
    full, _ = p.loss_fn(ts.params, *data)
    assert loss.shape == (cfg.update_epochs, cfg.num_minibatches)
    np.testing.assert_allclose(np.asarray(loss).sum(1), cfg.num_minibatches * float(full), rtol=1e-5)
    assert np.std(np.asarray(loss)[0]) > 0  # minibatches really differ


def test_schedules():
    cfg = pqn.Config(**{**SMALL, "total_timesteps": 8 * 16 * 20, "eps_decay": 0.25})
    p = pqn.build(cfg)
    assert isinstance(p, pqn.Parts)  # a named structure, not every local of build()
    assert p.num_updates == p.num_updates_decay == 20
    assert float(p.epsilon(0)) == pytest.approx(cfg.eps_start)
    assert float(p.epsilon(2.5)) == pytest.approx((cfg.eps_start + cfg.eps_finish) / 2)
    for n in (5, 6, 19, 100):
        assert float(p.epsilon(n)) == pytest.approx(cfg.eps_finish)
    grad_steps = p.num_updates * cfg.update_epochs * cfg.num_minibatches
    assert float(p.lr(0)) == pytest.approx(cfg.lr)
    assert abs(float(p.lr(grad_steps))) < 1e-6 * cfg.lr
    # shorter run, same schedules: decay over total_timesteps_decay
    p2 = pqn.build(dataclasses.replace(cfg, total_timesteps=8 * 16 * 5, total_timesteps_decay=8 * 16 * 20))
    assert p2.num_updates == 5 and float(p2.epsilon(5)) == pytest.approx(float(p.epsilon(5)))


def test_default_network_has_layernorm_per_hidden_layer():
    for env, n_ln in (("CartPole-v1", len(pqn.Config().hidden)), ("Breakout-MinAtar", 2)):
        cfg = pqn.Config(**{**pqn.preset(env), "env": env})
        p = pqn.build(cfg)
        params = p.init(jax.random.PRNGKey(0)).params
        modules = {jax.tree_util.keystr(path[:-1]) for path, _ in jax.tree_util.tree_leaves_with_path(params)}
        assert len([m for m in modules if "LayerNorm" in m]) == n_ln, modules


# ---------------------------------------------------------------------------------------------
# config


def test_config_errors():
    with pytest.raises(ConfigError, match="discrete"):
        pqn.Config(env="Pendulum-v1").validate()
    with pytest.raises(ConfigError, match="num-minibatches"):
        pqn.Config(num_minibatches=7).validate()
    with pytest.raises(ConfigError, match="q-lambda"):
        rlx.config.validate(pqn.Config(q_lambda=1.5))
    pqn.Config().validate()
    pqn.Config(**{**pqn.preset("Breakout-MinAtar"), "env": "Breakout-MinAtar"}).validate()


# ---------------------------------------------------------------------------------------------
# smoke runs


def _run(cfg, seeds=2):
    t = pqn.make_train(cfg)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    state, metrics = jax.jit(jax.vmap(t.train))(keys)
    return t, state, metrics


def test_smoke_cartpole_two_seeds_differ():
    cfg = pqn.Config(**SMALL)
    with jax.debug_key_reuse(True):
        t, state, m = _run(cfg)
    U = t.num_updates
    for k in ("episode_return_sum", "episode_count", "episode_length_sum", "td_loss", "q_mean", "epsilon", "lr"):
        assert m[k].shape == (2, U) and m[k].dtype == jnp.float32, k
        assert np.all(np.isfinite(m[k])), k
    assert np.all(m["episode_count"].sum(1) > 0)
    G = U * cfg.update_epochs * cfg.num_minibatches  # the last gradient step (count G-1) uses lr / G
    assert float(m["lr"][0, -1]) == pytest.approx(cfg.lr / G, rel=1e-3)
    assert float(m["lr"][0, 0]) == pytest.approx(cfg.lr * (1 - (cfg.update_epochs * cfg.num_minibatches - 1) / G), rel=1e-4)
    assert float(m["epsilon"][0, 0]) == pytest.approx(1.0)
    leaves = jax.tree.leaves(state.params)
    assert all(not np.allclose(x[0], x[1]) for x in leaves if x[0].size > 1)
    assert not np.allclose(m["episode_return_sum"][0], m["episode_return_sum"][1])
    ev = jax.jit(jax.vmap(lambda s, k: t.evaluate(s, k, t.eval_episodes)))(state, jax.random.split(jax.random.PRNGKey(1), 2))
    assert ev.shape == (2,) and np.all(np.isfinite(ev)) and np.all(ev >= 1)


def test_smoke_minatar():
    cfg = pqn.Config(**{**pqn.preset("Breakout-MinAtar"), "env": "Breakout-MinAtar", "num_envs": 8,
                        "num_steps": 8, "num_minibatches": 2, "total_timesteps": 8 * 8 * 3})
    cfg.validate()
    t, state, m = _run(cfg, seeds=1)
    assert m["td_loss"].shape == (1, 3) and np.all(np.isfinite(m["td_loss"])) and np.all(np.isfinite(m["q_mean"]))
    q = pqn.build(cfg).q_fn(jax.tree.map(lambda x: x[0], state.params), state.obs[0])
    assert q.shape == (8, 3)


# ---------------------------------------------------------------------------------------------
# learning (the reference config: 32 envs x 64 steps, 5e5 steps; ~1-2 min per seed on one CPU core)


@pytest.mark.slow
def test_learns_cartpole_reference_config():
    from rlx.run import run

    res = run(pqn.Config, pqn.make_train, pqn.Config(), num_seeds=4, out=None, progress=False)
    assert res.summary["final_return_mean"] >= 475, res.summary
