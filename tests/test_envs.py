"""The env adapters: auto-reset, final observation, terminated vs truncated, episode stats."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.envs as envs

pytestmark = pytest.mark.timeout(600)


def rollout(env, n_steps, action_fn, seed=0):
    key = jax.random.PRNGKey(seed)
    obs, state = env.reset(key)

    def body(carry, k):
        obs, state = carry
        ka, ks = jax.random.split(k)
        out = env.step(ks, state, action_fn(ka))
        return (out[0], out[1]), (obs,) + tuple(out[:1]) + tuple(out[2:])

    _, (prev_obs, obs, rew, term, trunc, info) = jax.jit(lambda k: jax.lax.scan(body, (obs, state), jax.random.split(k, n_steps)))(key)
    return jax.device_get((prev_obs, obs, rew, term, trunc, info))


def test_gymnax_truncation_and_final_observation():
    env = envs.make("MountainCar-v0")  # 200-step limit; random actions never reach the goal
    assert env.max_episode_steps == 200 and env.action_kind == "discrete"
    prev, obs, rew, term, trunc, info = rollout(env, 450, lambda k: jax.random.randint(k, (), 0, 3))
    assert not term.any()
    assert list(np.nonzero(trunc)[0]) == [199, 399]
    t = 199
    # final_observation is the pre-reset observation; obs is a fresh start (velocity 0)
    assert not np.allclose(info["final_observation"][t], obs[t])
    assert obs[t][1] == 0.0 and -0.6 <= obs[t][0] <= -0.4
    np.testing.assert_allclose(info["final_observation"][t - 1], obs[t - 1])  # no reset: equal
    assert info["episode_length"][t] == 200 and info["episode_return"][t] == pytest.approx(-200.0)
    assert info["episode_length"][t - 1] == 0 and info["episode_return"][t - 1] == 0.0
    assert np.allclose(prev[t + 1], obs[t])


def test_gymnax_termination_episode_stats():
    env = envs.make("CartPole-v1")
    prev, obs, rew, term, trunc, info = rollout(env, 300, lambda k: jax.random.randint(k, (), 0, 2))
    ends = np.nonzero(term)[0]
    assert len(ends) >= 3 and not trunc.any()
    # each episode's return equals the sum of its rewards; the length is the step count
    starts = np.concatenate([[0], ends[:-1] + 1])
    for s, e in zip(starts, ends):
        assert info["episode_return"][e] == pytest.approx(rew[s:e + 1].sum())
        assert info["episode_length"][e] == e - s + 1


def test_continuous_gymnax_action_clipping_and_space():
    env = envs.make("Pendulum-v1")
    assert env.action_kind == "continuous" and env.action_space.shape == (1,)
    _, s = env.reset(jax.random.PRNGKey(0))
    r_big = env.step(jax.random.PRNGKey(1), s, jnp.array([100.0]))[2]
    r_max = env.step(jax.random.PRNGKey(1), s, jnp.array([float(env.action_space.high_array()[0])]))[2]
    assert float(r_big) == pytest.approx(float(r_max))


def test_unknown_env_lists_close_matches():
    with pytest.raises(ValueError, match="CartPole-v1"):
        envs.make("CartPol-v1")
    with pytest.raises(ValueError, match="brax/hopper"):
        envs.make("brax/hoper")


def test_brax_truncation_keeps_pre_reset_observation():
    env = envs.make("brax/inverted_pendulum", episode_length=6)
    assert env.action_kind == "continuous" and env.observation_space.shape[0] > 0
    prev, obs, rew, term, trunc, info = rollout(env, 14, lambda k: jnp.zeros(env.action_space.shape))
    assert not term.any()
    assert list(np.nonzero(trunc)[0]) == [5, 11]
    t = 5
    assert not np.allclose(info["final_observation"][t], obs[t])
    np.testing.assert_allclose(info["final_observation"][t - 1], obs[t - 1])
    assert info["episode_length"][t] == 6
    assert info["episode_return"][t] == pytest.approx(rew[: t + 1].sum(), rel=1e-5)


@pytest.mark.parametrize("autoreset", ["fresh", "cached"])
def test_brax_autoreset_modes(autoreset):
    """cached: every episode of an env restarts from that env's first state (brax's AutoResetWrapper);
    fresh: each episode from a new reset. Either way the time limit truncates and final_observation
    holds the pre-reset observation."""
    env = envs.make("brax/inverted_pendulum", episode_length=4, autoreset=autoreset)
    prev, obs, rew, term, trunc, info = rollout(env, 12, lambda k: jnp.zeros(env.action_space.shape), seed=3)
    first_obs, _ = env.reset(jax.random.PRNGKey(3))
    starts = obs[[3, 7, 11]]  # the observations right after each auto-reset
    assert list(np.nonzero(trunc)[0]) == [3, 7, 11] and not term.any()
    np.testing.assert_allclose(info["final_observation"][2], obs[2])
    assert not np.allclose(info["final_observation"][3], obs[3])
    if autoreset == "cached":
        for s in starts:
            np.testing.assert_array_equal(s, first_obs)
    else:
        assert not np.allclose(starts[0], first_obs) and not np.allclose(starts[0], starts[1])
    with pytest.raises(ValueError, match="autoreset"):
        envs.make("brax/inverted_pendulum", autoreset="first")


def test_gymnax_env_params_override():
    """`params=` sets gymnax EnvParams fields (MemoryChain's episode length follows its memory_length);
    an unknown field is a clear error that names it."""

    def first_done(env):
        _, st = env.reset(jax.random.PRNGKey(0))

        def body(c, k):
            st = c
            _, st, _, term, trunc, _ = env.step(k, st, jnp.asarray(0))
            return st, term | trunc

        _, done = jax.lax.scan(body, st, jax.random.split(jax.random.PRNGKey(1), 40))
        return int(np.argmax(np.asarray(done)))

    short, long = envs.make("MemoryChain-bsuite"), envs.make("MemoryChain-bsuite", params={"memory_length": 20})
    assert long._params.memory_length == 20 and short._params.memory_length == 5
    assert first_done(long) - first_done(short) == 15
    with pytest.raises(ValueError, match="memory_lenght"):
        envs.make("MemoryChain-bsuite", params={"memory_lenght": 20})
