"""Stream-x: ObGD against a naive per-parameter reference, the L1 bound, trace decay and reset
timing; the recipe in rlx.stream (sparse init, parameter-free LayerNorm, the Welford
normalisers, reward scaling, time feature and learner input, torsos); the online Monte-Carlo
error of stream TD, Q(λ)'s non-greedy flag, the AC entropy term and policy formulas.
Whole-algorithm runs: test_stream_td_q_ac_smoke.py and test_stream_q_stream_ac_learning.py."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import optim, stream

pytestmark = pytest.mark.timeout(600)


def random_tree(rng, scale=1.0):
    return {"dense_0": {"kernel": rng.normal(size=(5, 7)) * scale, "bias": rng.normal(size=(7,)) * scale},
            "dense_1": {"kernel": rng.normal(size=(7, 3)) * scale, "bias": rng.normal(size=(3,)) * scale}}


def to_f32(tree):
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), tree)


def naive_obgd(trace, grads, delta, reset, lr, gamma, lamda, kappa):
    """Per-parameter Python loops in float64, the reference `optim.py` written in "+" form."""
    names = [(l, p) for l in sorted(trace) for p in sorted(trace[l])]
    z = {l: {} for l in trace}
    z_sum = 0.0
    for l, p in names:
        e = np.array(trace[l][p], np.float64).ravel().copy()
        g = np.array(grads[l][p], np.float64).ravel()
        for i in range(e.size):
            e[i] = gamma * lamda * e[i] + g[i]
            z_sum += abs(e[i])
        z[l][p] = e.reshape(np.shape(trace[l][p]))
    delta_bar = max(abs(delta), 1.0)
    dot = delta_bar * z_sum * lr * kappa
    step = lr / dot if dot > 1 else lr
    upd = {l: {p: step * delta * z[l][p] for p in z[l]} for l in z}
    new_z = {l: {p: z[l][p] * (0.0 if reset else 1.0) for p in z[l]} for l in z}
    return upd, new_z, step


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


# --------------------------------------------------------------------------------------------
# ObGD


@pytest.mark.parametrize("delta", [0.3, -0.7, 5.0, -250.0, 0.0])
@pytest.mark.parametrize("grad_scale", [1e-3, 1.0])
@pytest.mark.parametrize("reset", [0.0, 1.0])
def test_obgd_matches_naive(delta, grad_scale, reset):
    rng = np.random.default_rng(int(abs(delta) * 10) + int(grad_scale * 100) + int(reset))
    trace, grads = random_tree(rng, grad_scale), random_tree(rng, grad_scale)
    lr, gamma, lamda, kappa = 0.7, 0.99, 0.8, 2.0
    opt = optim.obgd(lr, gamma, lamda, kappa)
    state = optim.ObGDState(to_f32(trace), jnp.zeros(()), jnp.zeros(()))
    upd, new_state = jax.jit(lambda g, s, d, r: opt.update(g, s, delta=d, reset=r))(to_f32(grads), state, jnp.float32(delta), jnp.float32(reset))
    ref_upd, ref_z, ref_step = naive_obgd(trace, grads, delta, reset, lr, gamma, lamda, kappa)
    np.testing.assert_allclose(flat(upd), flat(ref_upd), rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(flat(new_state.trace), flat(ref_z), rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(float(new_state.step_size), ref_step, rtol=2e-5)


def test_obgd_uses_one_global_l1_norm():
    """On a 2-layer net the step is α·δ·z / max(ακδ̄·Σ_all‖z‖₁, 1), not a per-layer norm."""
    rng = np.random.default_rng(0)
    grads = random_tree(rng)
    zero = jax.tree_util.tree_map(np.zeros_like, grads)
    opt = optim.obgd(1.0, 0.99, 0.8, 2.0)
    upd, _ = opt.update(to_f32(grads), opt.init(to_f32(zero)), delta=jnp.float32(3.0), reset=0.0)
    total = sum(np.abs(x).sum() for x in jax.tree_util.tree_leaves(grads))
    expected = {l: {p: 3.0 * grads[l][p] / (2.0 * 3.0 * total) for p in grads[l]} for l in grads}
    np.testing.assert_allclose(flat(upd), flat(expected), rtol=1e-5)
    per_layer = {l: {p: 3.0 * grads[l][p] / (2.0 * 3.0 * sum(np.abs(v).sum() for v in grads[l].values())) for p in grads[l]} for l in grads}
    assert not np.allclose(flat(upd), flat(per_layer), rtol=1e-3)


def test_obgd_l1_bound_and_step_size_cases():
    """‖Δθ‖₁ ≤ 1/κ always; α_eff = α exactly when M ≤ 1 and α_eff·M = α when M > 1."""
    rng = np.random.default_rng(1)
    n_bound = n_free = 0
    for i in range(300):
        lr = float(rng.choice([1.0, 0.3, 1e-3]))
        kappa = float(rng.choice([2.0, 3.0, 10.0]))
        scale = float(10.0 ** rng.uniform(-5, 1))
        delta = float(rng.choice([-1, 1]) * 10.0 ** rng.uniform(-3, 3))
        trace, grads = random_tree(rng, scale), random_tree(rng, scale)
        opt = optim.obgd(lr, 0.99, 0.8, kappa)
        state = optim.ObGDState(to_f32(trace), jnp.zeros(()), jnp.zeros(()))
        upd, st = opt.update(to_f32(grads), state, delta=jnp.float32(delta), reset=0.0)
        l1 = float(np.abs(flat(upd)).sum())
        assert l1 <= (1.0 / kappa) * (1 + 1e-5), (i, l1, kappa)
        m, step = float(st.bound), float(st.step_size)
        if m <= 1.0:
            assert step == np.float32(lr)
            n_free += 1
        else:
            np.testing.assert_allclose(step * m, lr, rtol=1e-5)
            n_bound += 1
    assert n_bound > 50 and n_free > 50  # both regimes were exercised


def test_obgd_trace_decays_and_resets_after_update():
    rng = np.random.default_rng(2)
    grads = to_f32(random_tree(rng))
    zero = jax.tree_util.tree_map(jnp.zeros_like, grads)
    opt = optim.obgd(1.0, 0.9, 0.5, 2.0)
    state = opt.init(grads)
    _, state = opt.update(grads, state, delta=jnp.float32(0.1), reset=0.0)
    np.testing.assert_allclose(flat(state.trace), flat(grads), rtol=1e-6)
    _, state = opt.update(zero, state, delta=jnp.float32(0.1), reset=0.0)
    np.testing.assert_allclose(flat(state.trace), 0.45 * flat(grads), rtol=1e-6)
    # reset = 1: the update uses the full (decayed + new) trace, the returned trace is zero
    upd, state2 = opt.update(grads, state, delta=jnp.float32(0.1), reset=1.0)
    full = 0.45 * 0.45 * flat(grads) + flat(grads)
    expected_step = 1.0 / max(2.0 * 1.0 * np.abs(full).sum(), 1.0)
    np.testing.assert_allclose(flat(upd), expected_step * 0.1 * full, rtol=1e-5)
    assert np.all(flat(state2.trace) == 0.0)
    # reset_before zeroes the old trace before accumulating: the step uses g only
    upd_b, state3 = opt.update(grads, state, delta=jnp.float32(0.1), reset=0.0, reset_before=1.0)
    expected_step = 1.0 / max(2.0 * np.abs(flat(grads)).sum(), 1.0)
    np.testing.assert_allclose(flat(upd_b), expected_step * 0.1 * flat(grads), rtol=1e-5)
    np.testing.assert_allclose(flat(state3.trace), flat(grads), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# network pieces


@pytest.mark.parametrize("shape", [(5, 16), (12, 128), (128, 128), (1, 8), (3, 3, 4, 16), (3, 3, 1, 5)])
def test_sparse_init_exact_zero_count_per_unit(shape):
    w = np.asarray(stream.sparse_init(0.9)(jax.random.PRNGKey(0), shape))
    fan_in = int(np.prod(shape[:-1]))
    per_unit_zeros = (w.reshape(fan_in, shape[-1]) == 0).sum(0)
    assert np.all(per_unit_zeros == math.ceil(0.9 * fan_in))
    nz = w[w != 0]
    assert np.all(np.abs(nz) <= 1 / np.sqrt(fan_in))
    # different units get different zero patterns (random permutations, not one shared mask)
    if fan_in >= 12 and shape[-1] > 4:
        masks = (w.reshape(fan_in, shape[-1]) == 0).T
        assert len({m.tobytes() for m in masks}) > 1


def test_stream_networks_are_sparse_with_zero_biases_and_no_norm_params():
    mlp = stream.StreamMLP((32, 32))
    p = mlp.init(jax.random.PRNGKey(0), jnp.zeros((12,)))["params"]
    assert sorted(p) == ["Dense_0", "Dense_1"]  # LayerNorm has no parameters
    assert (np.asarray(p["Dense_0"]["kernel"]) == 0).sum(0).tolist() == [11] * 32
    assert (np.asarray(p["Dense_1"]["kernel"]) == 0).sum(0).tolist() == [29] * 32
    assert all(np.all(np.asarray(p[k]["bias"]) == 0) for k in p)
    cnn = stream.StreamMinAtarCNN()
    p = cnn.init(jax.random.PRNGKey(1), jnp.zeros((10, 10, 4)))["params"]
    k = np.asarray(p["Conv_0"]["kernel"])
    assert k.shape == (3, 3, 4, 16) and (k.reshape(36, 16) == 0).sum(0).tolist() == [33] * 16
    assert (np.asarray(p["Dense_0"]["kernel"]) == 0).sum(0).tolist() == [922] * 128


def test_exact_layer_norm_matches_two_pass_float64_over_chw():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 8, 8, 16)) * 5 + 100.0  # large mean: the fast E[x²]−E[x]² variance loses digits here
    y = np.asarray(stream.exact_layer_norm(jnp.asarray(x, jnp.float32), 3))
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    var = ((x - mean) ** 2).mean(axis=(1, 2, 3), keepdims=True)
    ref = (x - mean) / np.sqrt(var + 1e-5)
    np.testing.assert_allclose(y, ref, atol=2e-4)
    np.testing.assert_allclose(y.mean(axis=(1, 2, 3)), 0.0, atol=5e-5)  # float32 sums of ~1e3 values near 100: ~1e-5 off
    np.testing.assert_allclose(y.var(axis=(1, 2, 3)), 1.0, atol=1e-3)


# --------------------------------------------------------------------------------------------
# normalisers


def test_welford_matches_numpy_on_a_stream():
    rng = np.random.default_rng(5)
    # feature 3: std/|mean| = 5e-3; float32 cannot resolve much smaller ratios (the error of
    # x − mean is ~ulp(mean), i.e. ~2·eps·|mean|/std relative to the variance)
    xs = rng.normal(size=(3000, 3)) * np.array([1.0, 50.0, 1e-2]) + np.array([0.0, 1000.0, -2.0])
    xs = xs.astype(np.float32).astype(np.float64)  # the reference sees the same (float32) samples
    w = stream.welford_init((3,))
    upd = jax.jit(stream.welford_update)
    var_fn = jax.jit(stream.welford_var)
    for i, x in enumerate(xs):
        w = upd(w, x)
        if i in (0, 1, 2, 99, 2999):
            if i == 0:
                np.testing.assert_allclose(np.asarray(w.mean), x, rtol=1e-6)
                np.testing.assert_array_equal(np.asarray(var_fn(w)), 1.0)  # count < 2
                continue
            np.testing.assert_allclose(np.asarray(w.mean), xs[: i + 1].mean(0), rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(np.asarray(var_fn(w)), xs[: i + 1].var(0, ddof=1), rtol=1e-4)
    assert int(w.count) == 3000
    # a masked-out update changes nothing
    w2 = upd(w, xs[0] * 100, False)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(w, w2))


def test_welford_long_stream_does_not_drift():
    """2M float32 samples: the stored-variance update stays close to the float64 statistics."""
    xs = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (2_000_000, 2)) * jnp.array([2.0, 0.5]) + jnp.array([5.0, -300.0]))
    w = jax.jit(lambda xs: jax.lax.scan(lambda w, x: (stream.welford_update(w, x), None), stream.welford_init((2,)), xs)[0])(xs)
    x64 = xs.astype(np.float64)
    assert int(w.count) == 2_000_000
    # what matters for normalisation: the error in units of the std (float32 rounding of a
    # mean of ~600 std units random-walks to a few 1e-4 std over 2M steps)
    assert np.all(np.abs(np.asarray(w.mean) - x64.mean(0)) / x64.std(0) < 2e-3)
    np.testing.assert_allclose(np.asarray(stream.welford_var(w)), x64.var(0, ddof=1), rtol=2e-3)


def test_stream_reward_scale_matches_reference():
    """u ← γ(1 − done)u + r with the current step's done (u = r_T at a terminal), unbiased
    Welford var of u, reward / √(var + 1e-8), as in the reference ScaleReward."""
    rng = np.random.default_rng(6)
    gamma = 0.9
    rewards = rng.normal(size=200) + 1.0
    dones = rng.random(200) < 0.1
    sc = stream.stream_reward_scaler_init()
    step = jax.jit(lambda s, r, d: stream.stream_reward_scale(s, r, d, gamma))
    u, us = 0.0, []
    for r, d in zip(rewards, dones):
        u = u * gamma * (1 - d) + r
        us.append(u)
        sc, scaled = step(sc, jnp.float32(r), jnp.asarray(d))
        var = 1.0 if len(us) < 2 else np.var(us, ddof=1)
        np.testing.assert_allclose(float(scaled), r / np.sqrt(var + 1e-8), rtol=1e-4)
        if d:
            np.testing.assert_allclose(float(sc.trace), r, rtol=1e-6)


def test_stream_observe_updates_with_reset_observations():
    w = stream.welford_update(stream.welford_init((2,)), jnp.array([0.0, 0.0]))
    final, reset = jnp.array([2.0, 4.0]), jnp.array([-1.0, 1.0])
    w1, s_prime, s_next = stream.stream_observe(w, final, reset, jnp.asarray(False))
    assert int(w1.count) == 2 and np.array_equal(np.asarray(s_prime), np.asarray(s_next))
    w2, s_prime2, s_next2 = stream.stream_observe(w, final, reset, jnp.asarray(True))
    assert int(w2.count) == 3
    np.testing.assert_allclose(np.asarray(s_prime2), np.asarray(s_prime))  # s′ normalised before the reset obs enters
    data = np.array([[0.0, 0.0], [2.0, 4.0], [-1.0, 1.0]])
    np.testing.assert_allclose(np.asarray(s_next2), (data[2] - data.mean(0)) / np.sqrt(data.var(0, ddof=1) + 1e-8), rtol=1e-5)


def test_time_feature_follows_reference_quirk():
    vals = [float(stream.time_feature(jnp.int32(k), 100.0)) for k in range(4)]
    np.testing.assert_allclose(vals, [-0.5, -0.5, -0.49, -0.48], rtol=1e-6)


@pytest.mark.parametrize("use_time_feature", [True, False])
def test_learner_input_recipe_against_naive_reference(use_time_feature):
    """A stream of auto-resetting steps through learner_input_init / learner_input_step against a
    float64 reference of the official wrappers (NormalizeObservation on every emitted observation,
    reset ones included, then AddTimeInfo with its −0.5 quirk): s′ is the step's final observation
    normalised with stats that include it, s the reset observation after `done` (else s′), and the
    episode step count restarts at 0."""
    rng = np.random.default_rng(9)
    horizon, T = 20.0, 60
    obs0 = rng.normal(size=3) * 4 + 1
    finals = rng.normal(size=(T, 3)) * 4 + 1
    resets = rng.normal(size=(T, 3)) * 4 + 1
    dones = rng.random(T) < 0.15
    seen = [obs0]

    def norm(x):
        data = np.array(seen)
        var = np.ones(3) if len(data) < 2 else data.var(0, ddof=1)
        return (x - data.mean(0)) / np.sqrt(var + 1e-8)

    def with_time(x, steps):
        return np.append(x, -0.5 + max(steps - 1, 0) / horizon) if use_time_feature else x

    stats, s = stream.learner_input_init(jnp.asarray(obs0, jnp.float32), horizon, use_time_feature)
    np.testing.assert_allclose(np.asarray(s), with_time(norm(obs0), 0), atol=1e-5)
    step = jax.jit(lambda st, k, f, n, d: stream.learner_input_step(st, k, f, n, d, horizon, use_time_feature))
    steps = jnp.zeros((), jnp.int32)
    ref_steps = 0
    for t in range(T):
        next_obs = resets[t] if dones[t] else finals[t]
        stats, s_prime, s, steps = step(stats, steps, jnp.asarray(finals[t], jnp.float32),
                                        jnp.asarray(next_obs, jnp.float32), jnp.asarray(dones[t]))
        seen.append(finals[t])
        ref_prime = with_time(norm(finals[t]), ref_steps + 1)
        ref_steps = 0 if dones[t] else ref_steps + 1
        if dones[t]:
            seen.append(resets[t])
        ref_s = with_time(norm(resets[t]), 0) if dones[t] else ref_prime
        np.testing.assert_allclose(np.asarray(s_prime), ref_prime, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(np.asarray(s), ref_s, rtol=1e-4, atol=1e-5)
        assert int(steps) == ref_steps and int(stats.count) == len(seen)
    assert dones.sum() >= 3  # resets were exercised


@pytest.mark.parametrize("conv", [False, True])
def test_stream_torso_picks_the_reference_network(conv):
    x = jnp.zeros((10, 10, 4)) if conv else jnp.zeros((5,))
    p = stream.stream_torso((32, 64), conv).init(jax.random.PRNGKey(0), x)["params"]
    if conv:
        assert sorted(p) == ["Conv_0", "Dense_0"] and p["Dense_0"]["kernel"].shape[-1] == 64
    else:
        assert [p[k]["kernel"].shape for k in sorted(p)] == [(5, 32), (32, 64)]


# --------------------------------------------------------------------------------------------
# algorithm pieces


def test_mc_error_matches_naive_returns():
    from rlx.algorithms import stream_td

    rng = np.random.default_rng(7)
    gamma = 0.95
    lengths = [1, 7, 30]
    acc = stream_td.mc_error_init()
    upd = jax.jit(lambda a, v, r, d: stream_td.mc_error_update(a, v, r, d, gamma))
    for L in lengths:
        v, r = rng.normal(size=L) * 3, rng.normal(size=L)
        outs = []
        for k in range(L):
            acc, out = upd(acc, jnp.float32(v[k]), jnp.float32(r[k]), jnp.asarray(k == L - 1))
            outs.append([float(o) for o in out])
        G = np.array([sum(gamma ** (k - t) * r[k] for k in range(t, L)) for t in range(L)])
        np.testing.assert_allclose(outs[-1], [np.sum((v - G) ** 2), L, G.sum(), np.sum(G ** 2)], rtol=1e-4, atol=1e-4)
        assert all(o == [0.0, 0.0, 0.0, 0.0] for o in outs[:-1])


def test_q_nongreedy_flag():
    """A random action equal to argmax is greedy (no reset); a different one is non-greedy."""
    from rlx.algorithms import stream_q

    q = jnp.array([0.1, 2.0, -1.0])
    keys = jax.random.split(jax.random.PRNGKey(0), 400)
    a, ng = jax.vmap(lambda k: stream_q.epsilon_greedy(k, q, 1.0))(keys)
    a, ng = np.asarray(a), np.asarray(ng)
    assert set(a.tolist()) == {0, 1, 2}
    assert np.array_equal(ng, a != 1)
    a0, ng0 = jax.vmap(lambda k: stream_q.epsilon_greedy(k, q, 0.0))(keys)
    assert np.all(np.asarray(a0) == 1) and not np.any(np.asarray(ng0))


@pytest.mark.parametrize("continuous", [True, False])
def test_ac_entropy_term_scaled_by_sign_of_delta(continuous):
    """δ·∇[log π + β·sign(δ)·H]: flipping δ flips the log π part, not the β|δ|·∇H part."""
    from rlx.algorithms import stream_ac

    rng = np.random.default_rng(8)
    if continuous:
        out = (jnp.asarray(rng.normal(size=3), jnp.float32), jnp.asarray(rng.normal(size=3), jnp.float32))
        action = jnp.asarray(rng.normal(size=3), jnp.float32)
    else:
        out, action = jnp.asarray(rng.normal(size=4), jnp.float32), jnp.int32(2)
    beta, d = 0.01, 1.7

    def step(delta):
        g = jax.grad(stream_ac.actor_surrogate)(out, action, jnp.float32(delta), beta, continuous)
        return jax.tree_util.tree_map(lambda x: delta * x, g)

    def grad_of(fn):
        return jax.grad(lambda o: fn(o))(out)

    glogp = grad_of(lambda o: stream_ac.log_prob_and_entropy(o, action, continuous)[0])
    gent = grad_of(lambda o: stream_ac.log_prob_and_entropy(o, action, continuous)[1])
    plus, minus = flat(step(d)), flat(step(-d))
    np.testing.assert_allclose(plus, d * flat(glogp) + beta * d * flat(gent), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(minus, -d * flat(glogp) + beta * d * flat(gent), rtol=1e-5, atol=1e-7)
    assert np.abs(flat(gent)).sum() > 0


def test_gaussian_and_categorical_formulas():
    from rlx.algorithms import stream_ac

    mu, pre, a = jnp.array([0.3, -1.0]), jnp.array([0.5, -2.0]), jnp.array([1.0, 0.0])
    std = np.log1p(np.exp(np.asarray(pre)))
    ref_lp = np.sum(-0.5 * ((np.asarray(a) - np.asarray(mu)) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi))
    ref_h = np.sum(0.5 + 0.5 * np.log(2 * np.pi) + np.log(std))
    lp, h = stream_ac.log_prob_and_entropy((mu, pre), a, True)
    np.testing.assert_allclose([float(lp), float(h)], [ref_lp, ref_h], rtol=1e-5)
    logits = jnp.array([1.0, 0.0, -1.0])
    p = np.exp(np.asarray(logits)) / np.exp(np.asarray(logits)).sum()
    lp, h = stream_ac.log_prob_and_entropy(logits, jnp.int32(0), False)
    np.testing.assert_allclose([float(lp), float(h)], [np.log(p[0]), -(p * np.log(p)).sum()], rtol=1e-5)


