"""PPO: loss special cases, lr schedule, smoke runs (discrete, continuous, brax), learning."""
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.config
from rlx import cli
from rlx import run as R

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "algorithms"))
import ppo  # noqa: E402

pytestmark = pytest.mark.timeout(900)


def test_clipped_surrogate_has_zero_gradient_outside_the_clip_range():
    eps = 0.2
    old = jnp.zeros(4)
    # A > 0 and r > 1 + eps, or A < 0 and r < 1 - eps: clipped, no gradient
    for logp, adv in ((jnp.log(jnp.full(4, 1.5)), jnp.ones(4)), (jnp.log(jnp.full(4, 0.5)), -jnp.ones(4))):
        g = jax.grad(lambda lp: ppo.ppo_policy_loss(lp, old, adv, eps)[0])(logp)
        np.testing.assert_array_equal(g, 0.0)
    # inside the range the gradient is -A r / n
    logp = jnp.log(jnp.full(4, 1.1))
    adv = jnp.asarray([1.0, -2.0, 0.5, 3.0])
    g = jax.grad(lambda lp: ppo.ppo_policy_loss(lp, old, adv, eps)[0])(logp)
    np.testing.assert_allclose(g, -adv * 1.1 / 4, rtol=1e-5)
    # at r = 1 the loss is -mean(A), with no clipping and zero KL
    loss, (clip_frac, kl) = ppo.ppo_policy_loss(old, old, adv, eps)
    assert float(loss) == pytest.approx(-float(adv.mean()))
    assert float(clip_frac) == 0.0 and float(kl) == pytest.approx(0.0, abs=1e-7)


def test_value_clipping_takes_the_pessimistic_loss():
    v_old, target = jnp.zeros(3), jnp.full(3, 1.0)
    v = jnp.asarray([0.5, 0.1, -0.5])
    got = ppo.value_loss(v, v_old, target, 0.2, clip=True)
    want = 0.5 * np.mean(np.maximum((np.asarray(v) - 1) ** 2, (np.clip(np.asarray(v), -0.2, 0.2) - 1) ** 2))
    assert float(got) == pytest.approx(want, rel=1e-6)
    assert float(ppo.value_loss(v, v_old, target, 0.2, clip=False)) == pytest.approx(0.5 * np.mean((np.asarray(v) - 1) ** 2))


@pytest.mark.parametrize("epochs,mbs", [(4, 4), (1, 1), (3, 8)])
def test_lr_anneal_reaches_zero_after_the_last_step(epochs, mbs):
    cfg = ppo.Config(lr=3e-4, update_epochs=epochs, num_minibatches=mbs)
    n_upd, spu = 10, epochs * mbs
    sched = ppo.lr_schedule(cfg, n_upd, spu)
    assert float(sched(0)) == pytest.approx(3e-4)
    assert float(sched(spu - 1)) == pytest.approx(3e-4)  # constant within an update
    assert float(sched(spu)) == pytest.approx(3e-4 * 0.9)
    assert float(sched(n_upd * spu)) == pytest.approx(0.0, abs=1e-12)
    assert ppo.lr_schedule(ppo.Config(anneal_lr=False), n_upd, spu) == pytest.approx(2.5e-4)


def test_config_errors():
    with pytest.raises(R.ConfigError, match="num-minibatches"):
        ppo.Config(num_envs=3, num_steps=5, num_minibatches=4).validate()
    with pytest.raises(R.ConfigError, match="gae-lambda"):
        rlx.config.validate(ppo.Config(gae_lambda=1.5))  # declared range (Config.validate() keeps cross-field checks)
    with pytest.raises(R.ConfigError, match="less than one rollout"):
        ppo.Config(total_timesteps=100).validate()


def _cli_config(monkeypatch, argv):
    """The Config the command line builds from argv (the runner itself is replaced by a stub)."""
    import rlx.run

    jax.devices()  # backends up: cli.main then leaves XLA_FLAGS alone in this process
    seen = []
    monkeypatch.setattr(rlx.run, "run", lambda cfg_cls, make_train, cfg, **kw: seen.append((cfg, kw)))
    cli.main(ppo.Config, ppo.make_train, "ppo", ppo.preset, argv=argv)
    assert len(seen) == 1
    return seen[0]


def test_cli_applies_the_env_preset_and_explicit_flags_win(monkeypatch):
    import dataclasses

    preset = ppo.preset("brax/hopper")
    changed = {k for k, v in preset.items() if getattr(ppo.Config(), k) != v}
    assert len(changed) >= 3, preset  # the brax preset really differs from the CartPole defaults
    want = dataclasses.replace(ppo.Config(), env="brax/hopper", **preset)
    cfg, kw = _cli_config(monkeypatch, ["--env", "brax/hopper", "--num-seeds", "3"])
    assert cfg == want and kw["num_seeds"] == 3
    # explicit flags (int, tuple, bool, str) win over preset values; every other field keeps the preset's
    flags = {"num_steps": 7, "hidden": (32, 8), "normalize_obs": False, "env_backend": "spring"}
    assert set(flags) <= set(preset)
    cfg, _ = _cli_config(monkeypatch, ["--env", "brax/hopper", "--num-steps", "7", "--hidden", "32,8",
                                       "--no-normalize-obs", "--env-backend", "spring"])
    assert cfg == dataclasses.replace(want, **flags)
    # no --env: the defaults are the CartPole setting, unchanged by any preset
    cfg, _ = _cli_config(monkeypatch, ["--lr", "1e-3"])
    assert cfg == dataclasses.replace(ppo.Config(), lr=1e-3)


def small(env, **kw):
    base = dict(env=env, total_timesteps=512, num_envs=4, num_steps=16, num_minibatches=2, update_epochs=2, hidden=(16, 16))
    base.update(kw)
    return ppo.Config(**base)


@pytest.mark.parametrize("env,kw", [
    ("CartPole-v1", {}),
    ("Pendulum-v1", dict(normalize_obs=True, normalize_reward=True, ent_coef=0.0)),
    ("CartPole-v1", dict(bootstrap_truncation=False)),
])
def test_smoke_gymnax(env, kw):
    res = R.run(ppo.Config, ppo.make_train, small(env, **kw), name="ppo", num_seeds=2, progress=False, eval_episodes=2)
    assert len(res.metrics) > 0
    for row in res.metrics:
        for k in ("loss", "actor_loss", "value_loss", "entropy", "approx_kl"):
            assert np.isfinite(row[k]), (k, row)
        assert 0.0 <= row["clip_frac"] <= 1.0 and row["approx_kl"] >= -1e-6 and row["value_loss"] >= 0, row
        if env == "CartPole-v1":  # a categorical over 2 actions
            assert 0.0 < row["entropy"] <= np.log(2) + 1e-6, row
    assert all(np.isfinite(res.summary["final_return"]))
    leaves = jax.tree.leaves(res.state.params)
    assert all(x.shape[0] == 2 for x in leaves)
    assert any(not np.array_equal(x[0], x[1]) for x in leaves)  # the two seeds are independent runs


def test_updates_change_every_parameter_track_the_policy_change_and_learn_values():
    """Three updates on CartPole with a large step (lr 1e-2, 4 epochs): every parameter leaf moves;
    the ratio-based diagnostics see the policy change (clipping engages, approx_kl > 0, entropy falls
    below its uniform start of log 2); the critic learns that CartPole pays +1 per step (values at the
    initial observations rise from ~0); the run is a pure function of its key."""
    import rlx.envs as envs

    cfg = ppo.Config(env="CartPole-v1", total_timesteps=4 * 32 * 3, num_envs=4, num_steps=32, num_minibatches=2,
                     update_epochs=4, hidden=(16, 16), lr=1e-2, anneal_lr=False)
    t = ppo.make_train(cfg)
    train = jax.jit(t.train)
    s0 = jax.jit(t.init)(jax.random.PRNGKey(0))
    s, m = train(jax.random.PRNGKey(0))
    m = {k: np.asarray(v) for k, v in m.items()}
    assert t.num_updates == 3 and all(v.shape == (3,) for v in m.values())
    for a, b in zip(jax.tree.leaves(s0.params), jax.tree.leaves(s.params)):
        assert float(jnp.max(jnp.abs(a - b))) > 1e-4, "a parameter leaf did not move"
    assert (m["clip_frac"] >= 0).all() and (m["clip_frac"] <= 1).all() and m["clip_frac"].max() > 0.01, m["clip_frac"]
    assert (m["approx_kl"] > 0).all() and (m["approx_kl"] < 0.1).all(), m["approx_kl"]
    assert (m["entropy"] > 0.5).all() and (m["entropy"] < np.log(2)).all() and m["entropy"][-1] < m["entropy"][0] + 1e-3
    np.testing.assert_array_equal(m["episode_return_sum"], m["episode_length_sum"])  # +1 per step
    net = ppo.ActorCritic(envs.make("CartPole-v1").action_space, (16, 16), "tanh", obs_ndim=1)
    v_before, v_after = (np.asarray(net.apply(p, s0.obs)[1]) for p in (s0.params, s.params))
    assert np.abs(v_before).max() < 0.5 and v_after.min() > 1.0, (v_before, v_after)
    # deterministic given the key; another key gives another run
    s_again, m_again = train(jax.random.PRNGKey(0))
    for a, b in zip(jax.tree.leaves((s, m)), jax.tree.leaves((s_again, {k: np.asarray(v) for k, v in m_again.items()}))):
        np.testing.assert_array_equal(a, b)
    s_other, _ = train(jax.random.PRNGKey(1))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s.params), jax.tree.leaves(s_other.params)))


def test_episode_metrics_count_every_finished_episode():
    """The rollout keeps per-env episode values through its scan and sums them after it
    (episode_metrics(..., keep_env_axes=True)). On CartPole every step pays 1, so each finished
    episode's return equals its length, and the lengths of all finished episodes add up to the env
    steps taken less the unfinished episodes' steps at the end (under 500 per env)."""
    from rlx.train import episode_metrics
    info = {"episode_return": jnp.arange(12.0).reshape(3, 4), "episode_length": jnp.arange(12).reshape(3, 4)}
    done = (jnp.arange(12).reshape(3, 4) % 3) == 0
    per_env, summed = episode_metrics(info, done, keep_env_axes=True), episode_metrics(info, done)
    for k in summed:
        assert per_env[k].shape == (3, 4) and float(per_env[k].sum()) == float(summed[k])
    assert float(summed["episode_return_sum"]) == 0 + 3 + 6 + 9 and float(summed["episode_count"]) == 4

    cfg = ppo.Config(env="CartPole-v1", num_envs=4, num_steps=64, total_timesteps=4 * 64 * 12)
    t = ppo.make_train(cfg)
    _, m = jax.jit(t.train)(jax.random.PRNGKey(3))
    ret, length, count = (np.asarray(m[k]) for k in ("episode_return_sum", "episode_length_sum", "episode_count"))
    assert ret.shape == (t.num_updates,)
    np.testing.assert_array_equal(ret, length)
    steps = t.num_updates * t.env_steps_per_update
    assert steps - cfg.num_envs * 500 < length.sum() <= steps, (length.sum(), steps)
    assert count.sum() >= (steps - cfg.num_envs * 500) / 500


def test_smoke_brax_finite():
    cfg = small("brax/inverted_pendulum", normalize_obs=True, normalize_reward=True, ent_coef=0.0, total_timesteps=256)
    res = R.run(ppo.Config, ppo.make_train, cfg, name="ppo", num_seeds=1, progress=False, eval_episodes=0)
    assert all(np.isfinite(r["loss"]) for r in res.metrics)
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(res.state.params))


def test_learns_cartpole_4_seeds():
    """PureJaxRL's CartPole setting: mean final (greedy evaluation) return over 4 seeds >= 475 at 5e5 steps.
    A vmapped multi-seed run: it also guards against the XLA CPU runtime hang (the timeout fails it)."""
    res = R.run(ppo.Config, ppo.make_train, ppo.Config(), name="ppo", num_seeds=4, progress=False)
    assert res.summary["final_return_mean"] >= 475, res.summary["final_return"]
    assert np.nanmean(res.summary["train_return_last5pct"]) >= 400, res.summary["train_return_last5pct"]


def test_smoke_multi_discrete_lot_sizing():
    """PPO is the baseline for PDPPO: one categorical per machine on the lot-sizing env."""
    cfg = small("lot-sizing/15x5", total_timesteps=400, num_steps=20, num_envs=2, num_minibatches=2)
    res = R.run(ppo.Config, ppo.make_train, cfg, name="ppo", num_seeds=2, progress=False, eval_episodes=2)
    assert all(np.isfinite(r["loss"]) for r in res.metrics)
    assert all(np.isfinite(res.summary["final_return"]))
    # the policy head has one block of logits per machine
    import rlx.envs as envs

    env = envs.make("lot-sizing/15x5")
    net = ppo.ActorCritic(env.action_space, (16, 16), "tanh")
    params = net.init(jax.random.PRNGKey(0), jnp.zeros((1,) + env.observation_space.shape))
    pi, _ = net.apply(params, jnp.zeros((3,) + env.observation_space.shape))
    a = pi.sample(seed=jax.random.PRNGKey(1))
    assert a.shape == (3, len(env.action_space.nvec))
    assert pi.log_prob(a).shape == (3,)
