"""Recurrent PQN (algorithms/pqn_rnn.py): sequence targets against a naive recursion, GRU resets,
stored hidden states, whole-sequence minibatches, memory window, config errors, smoke runs and
learning on MemoryChain (a task a memoryless policy cannot solve)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx.algorithms import pqn_rnn
from rlx.config import ConfigError

pytestmark = pytest.mark.timeout(600)

SMALL = dict(total_timesteps=8 * 16 * 4, num_envs=8, num_steps=16, memory_window=3, num_minibatches=4,
             update_epochs=2, hidden=(32, 32))


def naive_sequence_targets(r, q, term, trunc, tq, gamma, lam):
    L, B, _ = q.shape
    R = np.zeros((L - 1, B))
    for b in range(B):
        for t in reversed(range(L - 1)):
            nq = tq[t, b] if trunc[t, b] else max(q[t + 1, b])
            boot = 0.0 if term[t, b] else nq
            if term[t, b] or trunc[t, b] or t == L - 2:
                R[t, b] = r[t, b] + gamma * boot
            else:
                R[t, b] = r[t, b] + gamma * ((1 - lam) * nq + lam * R[t + 1, b])
    return R


@pytest.mark.parametrize("lam", [0.0, 0.5, 0.95, 1.0])
def test_sequence_targets_match_naive_recursion(lam):
    rng = np.random.default_rng(int(lam * 100))
    L, B, A = 14, 5, 3
    r = rng.normal(size=(L, B)).astype(np.float32)
    q = rng.normal(size=(L, B, A)).astype(np.float32)
    tq = rng.normal(size=(L, B)).astype(np.float32)
    term = rng.random((L, B)) < 0.15
    trunc = (rng.random((L, B)) < 0.1) & ~term
    term[5, 0], trunc[L - 2, 1], term[L - 2, 2], trunc[L - 2, 2] = True, True, True, False
    got = pqn_rnn.sequence_targets(jnp.asarray(r), jnp.asarray(q), jnp.asarray(term, jnp.float32),
                                   jnp.asarray(trunc, jnp.float32), jnp.asarray(tq), 0.97, lam)
    np.testing.assert_allclose(got, naive_sequence_targets(r, q, term, trunc, tq, 0.97, lam), rtol=1e-5, atol=1e-5)
    # the bootstrap of the last trained step is Q of the last step in the sequence, not beyond
    assert got.shape == (L - 1, B)


def test_gru_resets_at_episode_start_and_ignores_previous_action():
    net = pqn_rnn.RNNQNetwork(2, hidden=(16, 16))
    key = jax.random.PRNGKey(0)
    T, B = 7, 3
    obs = jax.random.normal(key, (T, B, 4))
    starts = jnp.zeros((T, B), bool).at[4].set(True)
    last_a = jnp.zeros((T, B), jnp.int32)
    params = net.init(key, jnp.zeros((B, 16)), obs, starts, last_a)
    _, q1 = net.apply(params, jnp.zeros((B, 16)), obs, starts, last_a)
    # another past (hidden state, earlier observations, previous action at the start step)
    obs2 = obs.at[:4].set(jax.random.normal(jax.random.PRNGKey(1), (4, B, 4)))
    last_a2 = last_a.at[4].set(1)
    _, q2 = net.apply(params, jax.random.normal(key, (B, 16)), obs2, starts, last_a2)
    np.testing.assert_allclose(q1[4:], q2[4:], rtol=1e-5, atol=1e-6)
    assert not np.allclose(q1[:4], q2[:4])
    # without a start, the past matters
    _, q3 = net.apply(params, jnp.zeros((B, 16)), obs2, jnp.zeros((T, B), bool), last_a)
    assert not np.allclose(q1[4:], q3[4:])


@pytest.fixture(scope="module")
def cartpole():
    cfg = pqn_rnn.Config(**SMALL)
    p = pqn_rnn.build(cfg)
    assert isinstance(p, pqn_rnn.Parts)  # a named structure, not every local of build()
    ts0 = jax.jit(p.init)(jax.random.PRNGKey(0))
    ts1, m = jax.jit(p.update)(ts0)
    return cfg, p, ts0, ts1, m


def test_stored_hidden_states_match_running_the_sequence(cartpole):
    """Re-running the network over a stored sequence from its first hidden state reproduces the
    Q-values of stepping it one step at a time from each stored hidden state."""
    cfg, p, ts0, ts1, _ = cartpole
    mem = ts1.memory
    L = cfg.memory_window + cfg.num_steps
    assert mem.obs.shape[:2] == (L, cfg.num_envs)
    assert np.asarray(mem.start).any()  # episodes end inside (CartPole under a random policy)
    # the rollout's parameters are ts0.params (memory[W:] is ts1's rollout, made before learning)
    seg = jax.tree.map(lambda x: x[cfg.memory_window:], mem)
    _, q_seq = p.network.apply(ts0.params, seg.h[0], seg.obs, seg.start, seg.last_action)
    q_steps = jnp.stack([p.q_step(ts0.params, seg.h[t], seg.obs[t], seg.start[t], seg.last_action[t])[1]
                         for t in range(cfg.num_steps)])
    np.testing.assert_allclose(q_seq, q_steps, rtol=1e-4, atol=1e-5)
    # start flags follow episode ends; the previous action is the one taken at the step before
    done = np.asarray(mem.terminated | mem.truncated)
    np.testing.assert_array_equal(np.asarray(mem.start[1:]), done[:-1])
    np.testing.assert_array_equal(np.asarray(mem.last_action[1:]), np.asarray(mem.action[:-1]))


def test_memory_window_carries_the_previous_steps(cartpole):
    cfg, p, ts0, ts1, _ = cartpole
    W = cfg.memory_window
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a[:W], b[-W:]), ts1.memory, ts0.memory)


def test_minibatches_hold_whole_sequences(cartpole):
    """With (practically) frozen params the minibatch losses of an epoch add up to
    num_minibatches x the loss over all envs: every field is split by the same env permutation."""
    cfg, _, _, ts1, _ = cartpole
    p = pqn_rnn.build(dataclasses.replace(cfg, lr=1e-30, anneal_lr=False))
    params, _, loss, _ = jax.jit(p.learn)(ts1.params, p.tx.init(ts1.params), jax.random.PRNGKey(5), ts1.memory)
    full, _ = p.loss_fn(ts1.params, ts1.memory)
    assert loss.shape == (cfg.update_epochs, cfg.num_minibatches)
    np.testing.assert_allclose(np.asarray(loss).sum(1), cfg.num_minibatches * float(full), rtol=1e-4)
    assert np.std(np.asarray(loss)[0]) > 0


def test_smoke_two_seeds(cartpole):
    cfg = pqn_rnn.Config(**SMALL)
    t = pqn_rnn.make_train(cfg)
    with jax.debug_key_reuse(True):
        state, m = jax.jit(jax.vmap(t.train))(jax.random.split(jax.random.PRNGKey(0), 2))
    for k in ("episode_return_sum", "episode_count", "episode_length_sum", "td_loss", "q_mean", "epsilon", "lr"):
        assert m[k].shape == (2, t.num_updates) and np.all(np.isfinite(m[k])), k
    assert not np.allclose(m["episode_return_sum"][0], m["episode_return_sum"][1])
    ev = jax.jit(jax.vmap(lambda s, k: t.evaluate(s, k, t.eval_episodes)))(state, jax.random.split(jax.random.PRNGKey(1), 2))
    assert ev.shape == (2,) and np.all(ev >= 1)


def test_config_errors():
    with pytest.raises(ConfigError, match="discrete"):
        pqn_rnn.Config(env="Pendulum-v1").validate()
    with pytest.raises(ConfigError, match="num-envs"):
        pqn_rnn.Config(num_envs=32, num_minibatches=5).validate()
    pqn_rnn.Config().validate()
    pqn_rnn.Config(**{**pqn_rnn.preset("MemoryChain-bsuite"), "env": "MemoryChain-bsuite"}).validate()


@pytest.mark.slow
def test_learns_memory_chain():
    """MemoryChain: the context bit is shown only at the first step and must be recalled at the
    last (+1 right, -1 wrong): a memoryless policy scores 0 on average, a recurrent one 1."""
    cfg = pqn_rnn.Config(**{**pqn_rnn.preset("MemoryChain-bsuite"), "env": "MemoryChain-bsuite", "num_steps": 32,
                            "num_minibatches": 4, "update_epochs": 2, "hidden": (64, 64),
                            "total_timesteps": 32 * 32 * 20})
    t = pqn_rnn.make_train(cfg)
    state, m = jax.jit(t.train)(jax.random.PRNGKey(0))
    ev = float(jax.jit(lambda s, k: t.evaluate(s, k, t.eval_episodes))(state, jax.random.PRNGKey(1)))
    assert ev >= 0.9, ev
    # a memoryless policy earns 0 on average: the first updates (epsilon ~ 1) are near 0
    ret = np.asarray(m["episode_return_sum"] / np.maximum(m["episode_count"], 1))
    assert abs(ret[0]) < 0.2 and ret[-5:].mean() >= 0.9, ret


def test_memory_length_flag():
    cfg = pqn_rnn.Config(**{**pqn_rnn.preset("MemoryChain-bsuite"), "env": "MemoryChain-bsuite", "memory_length": 12})
    cfg.validate()
    assert pqn_rnn.make_env(cfg)._params.memory_length == 12
    with pytest.raises(ConfigError, match="memory-length"):
        pqn_rnn.Config(env="CartPole-v1", memory_length=12).validate()
