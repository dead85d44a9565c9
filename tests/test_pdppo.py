"""PDPPO: advantage rule, returns, factorised ratio, gradients, buffer, whole-actor training,
smoke on both post-decision envs and a short learning run on lot sizing."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.config
from rlx import returns
from rlx.algorithms import pdppo
from rlx.config import ConfigError

pytestmark = pytest.mark.timeout(600)

SMALL = dict(num_envs=2, num_steps=10, buffer_chunks=3, update_epochs=2)


def test_advantage_rule_hand_case():
    g = 0.5
    r_pre = jnp.array([[-1.0], [-2.0], [-3.0]])
    r_x = jnp.array([[-10.0], [0.0], [-20.0]])
    v = jnp.array([[-2.0], [-4.0], [-3.0]])
    vx = jnp.array([[-5.0], [-20.0], [-15.0]])
    term = jnp.array([[False], [False], [True]])
    nxt = lambda x: jnp.concatenate([x[1:], jnp.zeros_like(x[:1])])
    no = jnp.zeros_like(term)
    adv, t_v, t_vx = pdppo.combine_advantages("max", r_pre, r_x, v, vx, nxt(v), nxt(vx), term, no, no, g, 1.0)
    # R_pre = [-2.75, -3.5, -3], R_x = [-15, -10, -20]
    np.testing.assert_allclose(t_v[:, 0], [-2.75, -3.5, -3.0])
    np.testing.assert_allclose(t_vx[:, 0], [-15.0, -10.0, -20.0])
    # max(R_pre - V, R_x - V^x) = max([-0.75, 0.5, 0], [-10, 10, -5])
    np.testing.assert_allclose(adv[:, 0], [-0.75, 10.0, 0.0])
    # the one-critic / PPO rules on the full reward R = R_pre + R_x = [-17.75, -13.5, -23]
    a_post, _, t_post = pdppo.combine_advantages("post", r_pre, r_x, v, vx, nxt(v), nxt(vx), term, no, no, g, 1.0)
    np.testing.assert_allclose(a_post[:, 0], [-17.75 + 5, -13.5 + 20, -23 + 15])
    a_state, t_state, _ = pdppo.combine_advantages("state", r_pre, r_x, v, vx, nxt(v), nxt(vx), term, no, no, g, 1.0)
    np.testing.assert_allclose(a_state[:, 0], [-17.75 + 2, -13.5 + 4, -23 + 3])
    a_min, t_min, _ = pdppo.combine_advantages("min", r_pre, r_x, v, vx, nxt(v), nxt(vx), term, no, no, g, 1.0)
    np.testing.assert_allclose(a_min[:, 0], [-17.75 + 5, -13.5 + 20, -23 + 15])  # min(V, V^x) = V^x here


def naive_mc(r, term, last_boot, gamma):
    """Discounted returns restarting at terminations; the rollout's last step bootstraps."""
    T = len(r)
    out = np.zeros(T)
    for t in reversed(range(T)):
        if term[t]:
            nxt = 0.0
        elif t == T - 1:
            nxt = last_boot
        else:
            nxt = out[t + 1]
        out[t] = r[t] + gamma * nxt
    return out


def test_max_advantage_matches_naive_monte_carlo_on_random_rollouts():
    rng = np.random.RandomState(0)
    T, N, g = 17, 3, 0.9
    r_pre, r_x = rng.randn(T, N), rng.randn(T, N) * 3
    v, vx = rng.randn(T, N), rng.randn(T, N)
    term = rng.rand(T, N) < 0.15
    boot = rng.randn(N)
    next_v = np.concatenate([v[1:], boot[None]])  # V of the next state (bootstrap at the rollout end)
    last = np.zeros((T, N), bool)
    last[-1] = True
    cut = last & ~term
    next_vx = np.where(last | term, 0.0, np.concatenate([vx[1:], np.zeros((1, N))]))
    adv, t_v, t_vx = pdppo.combine_advantages("max", *map(jnp.asarray, (r_pre, r_x, v, vx, next_v, next_vx, term, cut, cut)), g, 1.0)
    for n in range(N):
        R_pre = naive_mc(r_pre[:, n], term[:, n], boot[n], g)
        R_x = naive_mc(r_x[:, n], term[:, n], 0.0, g)  # no post-decision state after the rollout: cut
        np.testing.assert_allclose(t_v[:, n], R_pre, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(t_vx[:, n], R_x, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(adv[:, n], np.maximum(R_pre - v[:, n], R_x - vx[:, n]), rtol=1e-5, atol=1e-5)


def test_mc_returns_equal_gae_lambda_one_with_zero_values():
    rng = np.random.RandomState(1)
    T, N, g = 23, 4, 0.9
    r = rng.randn(T, N)
    term = rng.rand(T, N) < 0.1
    term[-1] = True
    z = jnp.zeros((T, N))
    adv, _ = returns.gae(r, z, z, term, jnp.zeros((T, N), bool), g, 1.0)
    for n in range(N):
        np.testing.assert_allclose(adv[:, n], naive_mc(r[:, n], term[:, n], 0.0, g), rtol=1e-5, atol=1e-5)
    _, t_v, _ = pdppo.combine_advantages("max", jnp.asarray(r), z, z, z, z, z, jnp.asarray(term), z.astype(bool), z.astype(bool), g, 1.0)
    np.testing.assert_allclose(t_v, adv, rtol=1e-6, atol=1e-6)


def test_factorised_ratio_is_mean_of_per_machine_clipped_objectives():
    rng = np.random.RandomState(2)
    B, F, eps = 32, 5, 0.2
    lp, old = rng.randn(B, F) * 0.3, rng.randn(B, F) * 0.3
    adv = rng.randn(B)
    loss, clip_frac, _ = pdppo.policy_loss(jnp.asarray(lp), jnp.asarray(old), jnp.asarray(adv), eps)
    expect = np.zeros(B)
    for b in range(B):
        terms = []
        for f in range(F):
            ratio = np.exp(lp[b, f] - old[b, f])
            terms.append(min(ratio * adv[b], np.clip(ratio, 1 - eps, 1 + eps) * adv[b]))
        expect[b] = -np.mean(terms)
    np.testing.assert_allclose(loss, expect, rtol=1e-5, atol=1e-6)
    # differs from the joint ratio of the summed log-probs
    joint, _, _ = pdppo.policy_loss(jnp.asarray(lp.sum(1, keepdims=True)), jnp.asarray(old.sum(1, keepdims=True)), jnp.asarray(adv), eps)
    assert not np.allclose(joint, loss)


def _batch(train_cfg, key, n=24):
    env = pdppo.make_env(train_cfg)
    obs_dim = env.observation_space.shape[0]
    k = jax.random.split(key, 6)
    M = len(env.action_space.nvec)
    return pdppo.Sample(
        obs=jax.random.uniform(k[0], (n, obs_dim)) * 100, post_obs=jax.random.uniform(k[1], (n, obs_dim)) * 100,
        action=jax.random.randint(k[2], (n, M), 0, env.action_space.nvec[0]),
        log_prob=-jax.random.uniform(k[3], (n, M)) * 3, advantage=jax.random.normal(k[4], (n,)) * 10,
        target_v=jax.random.normal(k[5], (n,)) * 100, target_vx=jax.random.normal(k[5], (n,)) * 50 - 20)


def test_critic_gradients_come_only_from_their_own_mse():
    cfg = pdppo.Config(**SMALL)
    env = pdppo.make_env(cfg)
    space = env.action_space
    actor = pdppo.Actor(space, cfg.actor_hidden, cfg.actor_activation)
    critic = pdppo.Critic(cfg.critic_hidden, cfg.critic_activation)
    d = jnp.zeros((1, env.observation_space.shape[0]))
    ks = jax.random.split(jax.random.PRNGKey(0), 4)
    params = {"actor": actor.init(ks[0], d), "critic": critic.init(ks[1], d), "critic_x": critic.init(ks[2], d)}
    mb = _batch(cfg, ks[3])
    mask = (jnp.arange(24) < 20).astype(jnp.float32)  # padding rows must not count
    grad_fn = jax.jit(lambda p, b, m: jax.grad(pdppo.pdppo_loss, has_aux=True)(p, b, m, actor, critic, cfg))
    grads, info = grad_fn(params, mb, mask)
    keep = mask > 0
    mse = lambda p, o, t: jnp.mean((critic.apply(p, o[keep]) - t[keep]) ** 2)
    g_v = jax.grad(mse)(params["critic"], mb.obs, mb.target_v)
    g_vx = jax.grad(mse)(params["critic_x"], mb.post_obs, mb.target_vx)
    # float32 sums in a different order (masked sum vs mean of the kept rows): compare at the
    # scale of each gradient; a leak from the actor loss would differ by O(1) of that scale
    for a, b in zip(jax.tree.leaves(grads["critic"]) + jax.tree.leaves(grads["critic_x"]),
                    jax.tree.leaves(g_v) + jax.tree.leaves(g_vx)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(np.abs(b).max()))
    # the actor loss equals the factorised clipped objective on the valid rows minus the entropy bonus
    pi = actor.apply(params["actor"], mb.obs[keep])
    lp, ent = pi.distribution.log_prob(mb.action[keep]), pi.distribution.entropy()
    pg, _, _ = pdppo.policy_loss(lp, mb.log_prob[keep], mb.advantage[keep], cfg.clip_eps)
    np.testing.assert_allclose(info["actor_loss"], pg.mean() - cfg.ent_coef * ent.mean(), rtol=1e-5)


@functools.lru_cache(maxsize=None)
def _compiled(cfg):
    """make_train + jitted update, shared between tests (one compile per config)."""
    tr = pdppo.make_train(cfg)
    return tr, jax.jit(tr.update)


def _run_updates(cfg, n):
    tr, upd = _compiled(cfg)
    ts = tr.init(jax.random.PRNGKey(0))
    out = []
    for _ in range(n):
        first_obs = ts.obs
        ts, m = upd(ts)
        out.append((first_obs, ts, m))
    return tr, out


def test_whole_actor_trains_and_last_layer_only_flag():
    for last_only in (False, True):
        tr, upd = _compiled(pdppo.Config(**SMALL, actor_last_layer_only=last_only))
        ts0 = tr.init(jax.random.PRNGKey(0))
        ts1, m = upd(ts0)
        before, after = ts0.params["actor"]["params"], ts1.params["actor"]["params"]
        torso_changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before["torso"]), jax.tree.leaves(after["torso"]))]
        head_changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(before["head"]), jax.tree.leaves(after["head"]))]
        assert all(head_changed)
        if last_only:
            assert not any(torso_changed)
        else:
            assert all(torso_changed)  # every layer (kernels and biases) of the actor moved
        for k in ("critic", "critic_x"):
            assert all(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(ts0.params[k]), jax.tree.leaves(ts1.params[k])))


def test_buffer_keeps_the_newest_chunks():
    cfg = pdppo.Config(**SMALL)  # 3 chunks of 2 x 10 transitions
    tr, out = _run_updates(cfg, 5)
    per = cfg.num_envs * cfg.num_steps
    for k, (first_obs, ts, m) in enumerate(out, start=1):
        assert float(m["buffer_size"]) == min(k, cfg.buffer_chunks) * per
        slot = (k - 1) % cfg.buffer_chunks
        # the chunk written by update k starts with the observations its rollout started from
        np.testing.assert_array_equal(ts.buffer.obs[slot, : cfg.num_envs], first_obs)
    # after 5 updates with 3 slots: slots hold updates 4, 5, 3; update 4 overwrote update 1's chunk
    ts5 = out[-1][1]
    np.testing.assert_array_equal(ts5.buffer.obs[0, : cfg.num_envs], out[3][0])
    np.testing.assert_array_equal(ts5.buffer.obs[2, : cfg.num_envs], out[2][0])
    assert int(ts5.chunk) == 2


@pytest.mark.parametrize("env", ["lot-sizing/15x5", "frozen-lake-pd"])
def test_smoke_both_envs(env):
    cfg = dataclasses.replace(pdppo.Config(**{**pdppo.preset(env), "env": env}), total_timesteps=60, **{**SMALL, "num_steps": 10})
    cfg.validate()
    tr = pdppo.make_train(cfg)
    state, m = jax.jit(jax.vmap(tr.train))(jax.random.split(jax.random.PRNGKey(0), 2))
    assert tr.num_updates == 3 and tr.env_steps_per_update == 20
    for k in ("episode_return_sum", "episode_count", "episode_length_sum", "actor_loss", "critic_loss", "critic_x_loss", "entropy"):
        assert m[k].shape == (2, 3) and np.isfinite(np.asarray(m[k])).all(), k
    assert (np.asarray(m["critic_loss"]) >= 0).all() and (np.asarray(m["critic_x_loss"]) >= 0).all()  # MSEs
    assert (np.asarray(m["entropy"]) > 0).all()
    init = jax.vmap(tr.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    for part in ("actor", "critic", "critic_x"):  # every network trains (max advantage: both critics)
        moved = [float(jnp.max(jnp.abs(a - b))) for a, b in
                 zip(jax.tree.leaves(init.params[part]), jax.tree.leaves(state.params[part]))]
        assert max(moved) > 0, part
    actor = jax.tree.leaves(state.params["actor"])
    assert any(not np.array_equal(x[0], x[1]) for x in actor)  # the two seeds are independent runs
    assert np.isfinite(float(tr.evaluate(jax.tree.map(lambda x: x[0], state), jax.random.PRNGKey(1), tr.eval_episodes)))


def test_config_errors():
    with pytest.raises(ConfigError, match="post_decision"):
        pdppo.Config(env="CartPole-v1").validate()
    with pytest.raises(ConfigError, match="advantage"):
        rlx.config.validate(pdppo.Config(advantage="mean"))
    with pytest.raises(ConfigError, match="num-minibatches"):
        pdppo.Config(num_minibatches=7).validate()


@pytest.mark.slow
def test_pdppo_beats_random_policy_on_15x5():
    """Short budget: 200 updates of a cheaper schedule (10 epochs, 2-chunk buffer). At 40k steps (100
    updates) the last-10-update mean was -8.2k to -9.7k over 4 seeds (1 of 4 above the bar below)."""
    cfg = pdppo.Config(total_timesteps=80_000, update_epochs=10, buffer_chunks=2)
    tr = pdppo.make_train(cfg)
    _, m = jax.jit(tr.train)(jax.random.PRNGKey(0))
    ret = np.asarray(m["episode_return_sum"]) / np.maximum(np.asarray(m["episode_count"]), 1)
    env = pdppo.make_env(cfg)
    # the uniform random policy on the same instance, 64 episodes
    obs, st = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(5), 64))

    def body(c, key):
        obs, st = c
        ka, ks = jax.random.split(key)
        a = jax.vmap(env.action_space.sample)(jax.random.split(ka, 64))
        obs, st, r, *_ = jax.vmap(env.step)(jax.random.split(ks, 64), st, a)
        return (obs, st), r

    _, r = jax.jit(lambda: jax.lax.scan(body, (obs, st), jax.random.split(jax.random.PRNGKey(6), 100)))()
    random_return = float(np.asarray(r).sum(0).mean())
    first, last = ret[:10].mean(), ret[-10:].mean()
    assert abs(first - random_return) < 0.15 * abs(random_return)  # starts near uniform random
    assert last > random_return + 0.3 * abs(random_return), (first, last, random_return)
