"""GAE, lambda-returns and discounted returns against naive Python loops."""
import numpy as np
import pytest

from rlx import returns


def random_rollout(rng, T=50, N=3, p_term=0.08, p_trunc=0.06):
    r = rng.normal(size=(T, N)).astype(np.float32)
    v = rng.normal(size=(T, N)).astype(np.float32)
    nv = rng.normal(size=(T, N)).astype(np.float32)  # value of the true next state
    term = rng.random((T, N)) < p_term
    trunc = (rng.random((T, N)) < p_trunc) & ~term
    return r, v, nv, term, trunc


def naive_gae(r, v, nv, term, trunc, gamma, lam):
    T, N = r.shape
    adv = np.zeros((T, N))
    for n in range(N):
        a = 0.0
        for t in reversed(range(T)):
            delta = r[t, n] + gamma * (0.0 if term[t, n] else nv[t, n]) - v[t, n]
            if term[t, n] or trunc[t, n] or t == T - 1:
                a = delta
            else:
                a = delta + gamma * lam * a
            adv[t, n] = a
    return adv


def naive_lambda_returns(r, nv, term, trunc, gamma, lam):
    T, N = r.shape
    g = np.zeros((T, N))
    for n in range(N):
        nxt = None
        for t in reversed(range(T)):
            boot = 0.0 if term[t, n] else nv[t, n]
            if term[t, n] or trunc[t, n] or t == T - 1:
                g[t, n] = r[t, n] + gamma * boot
            else:
                g[t, n] = r[t, n] + gamma * ((1 - lam) * nv[t, n] + lam * nxt)
            nxt = g[t, n]
    return g


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_gae_matches_naive_loop(lam):
    rng = np.random.default_rng(0)
    r, v, nv, term, trunc = random_rollout(rng)
    assert term.any() and trunc.any()
    adv, target = returns.gae(r, v, nv, term, trunc, 0.97, lam)
    want = naive_gae(r, v, nv, term, trunc, 0.97, lam)
    np.testing.assert_allclose(adv, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(target, want + v, rtol=1e-4, atol=1e-4)


def test_gae_lambda_limits():
    rng = np.random.default_rng(1)
    r, v, nv, term, trunc = random_rollout(rng)
    gamma = 0.9
    # lambda = 0: one-step TD errors
    adv0, _ = returns.gae(r, v, nv, term, trunc, gamma, 0.0)
    np.testing.assert_allclose(adv0, r + gamma * (1 - term) * nv - v, rtol=1e-5, atol=1e-5)
    # lambda = 1 with no truncation and a consistent value chain: discounted return minus V
    trunc0 = np.zeros_like(trunc)
    nv_chain = np.concatenate([v[1:], nv[-1:]], 0)
    adv1, _ = returns.gae(r, v, nv_chain, term, trunc0, gamma, 1.0)
    mc = np.zeros_like(r)  # naive Monte-Carlo returns, restarting at terminations
    g = nv[-1]
    for t in reversed(range(len(r))):
        g = r[t] + gamma * (1 - term[t]) * g
        mc[t] = g
    np.testing.assert_allclose(adv1, mc - v, rtol=1e-4, atol=1e-4)


def test_gae_no_crossing_episode_boundary():
    """Changing anything after an episode end must not change advantages before it."""
    rng = np.random.default_rng(2)
    r, v, nv, term, trunc = random_rollout(rng, T=20, N=1, p_term=0, p_trunc=0)
    trunc[9, 0] = True
    a1, _ = returns.gae(r, v, nv, term, trunc, 0.99, 0.95)
    r2 = r.copy()
    r2[10:] += 100.0
    a2, _ = returns.gae(r2, v, nv, term, trunc, 0.99, 0.95)
    np.testing.assert_allclose(a1[:10], a2[:10], rtol=1e-6)
    # the truncated step bootstraps from the final observation's value
    np.testing.assert_allclose(a1[9, 0], r[9, 0] + 0.99 * nv[9, 0] - v[9, 0], rtol=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.65, 1.0])
def test_lambda_returns_match_naive_loop(lam):
    rng = np.random.default_rng(3)
    r, _, nv, term, trunc = random_rollout(rng)
    g = returns.lambda_returns(r, nv, term, trunc, 0.99, lam)
    np.testing.assert_allclose(g, naive_lambda_returns(r, nv, term, trunc, 0.99, lam), rtol=1e-4, atol=1e-4)


def test_lambda_returns_equal_gae_targets_when_values_consistent():
    """With next_values = V(s_{t+1}) inside episodes, lambda-returns equal GAE's value targets."""
    rng = np.random.default_rng(4)
    r, v, nv, term, trunc = random_rollout(rng)
    done = term | trunc
    chain = nv.copy()
    chain[:-1] = np.where(done[:-1], nv[:-1], v[1:])  # inside an episode the next state's value is V_{t+1}
    _, target = returns.gae(r, v, chain, term, trunc, 0.95, 0.8)
    g = returns.lambda_returns(r, chain, term, trunc, 0.95, 0.8)
    np.testing.assert_allclose(g, target, rtol=1e-4, atol=1e-4)


def test_running_stats_match_numpy():
    from rlx import normalize as nz

    rng = np.random.default_rng(5)
    data = rng.normal(3.0, 2.0, size=(40, 8, 3)).astype(np.float32)
    st = nz.stats_init((3,), init_count=0.0)
    for batch in data:
        st = nz.stats_update(st, batch)
    flat = data.reshape(-1, 3)
    np.testing.assert_allclose(st.mean, flat.mean(0), rtol=1e-4)
    np.testing.assert_allclose(st.var, flat.var(0), rtol=1e-3)
    assert float(st.count) == 320
