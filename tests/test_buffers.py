"""rlx.buffers: replay ring buffer (wrap-around, vmapped, only filled slots sampled), sizes, flatten."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rlx import buffers


def _item(i):
    return {"x": jnp.asarray(i, jnp.float32), "v": jnp.full((2,), i, jnp.int32)}


def _batch(ids):
    ids = np.asarray(ids)
    return {"x": jnp.asarray(ids, jnp.float32), "v": jnp.asarray(np.stack([ids, ids], 1), jnp.int32)}


def test_add_wraps_around_like_a_python_ring():
    cap = 5
    buf = buffers.replay_init(_item(0), cap)
    ring, pos, size, nxt = [0] * cap, 0, 0, 1
    for b in (3, 3, 1, 4, 5, 2):
        ids = list(range(nxt, nxt + b))
        nxt += b
        buf = buffers.replay_add(buf, _batch(ids))
        for i in ids:  # naive reference
            ring[pos] = i
            pos = (pos + 1) % cap
            size = min(size + 1, cap)
        assert int(buf.pos) == pos and int(buf.size) == size
        np.testing.assert_array_equal(np.asarray(buf.data["x"]), np.asarray(ring, np.float32))
        np.testing.assert_array_equal(np.asarray(buf.data["v"]), np.stack([ring, ring], 1))


def test_add_more_than_capacity_raises():
    buf = buffers.replay_init(_item(0), 3)
    with pytest.raises(ValueError):
        buffers.replay_add(buf, _batch([1, 2, 3, 4]))


def test_sample_only_filled_slots_and_all_of_them():
    cap = 8
    buf = buffers.replay_init(_item(0), cap)
    buf = buffers.replay_add(buf, _batch([11, 12, 13]))  # ids > 0: an empty slot would read 0
    s = buffers.replay_sample(buf, jax.random.PRNGKey(0), 3000)
    assert set(np.asarray(s["x"]).astype(int).tolist()) == {11, 12, 13}
    np.testing.assert_array_equal(np.asarray(s["v"])[:, 0], np.asarray(s["x"]).astype(int))  # leaves stay aligned
    # after wrap-around every slot holds a fresh item and all are sampled, roughly uniformly
    buf = buffers.replay_add(buf, _batch(list(range(14, 21))))  # 10 items into 8 slots
    s = np.asarray(buffers.replay_sample(buf, jax.random.PRNGKey(1), 8000)["x"]).astype(int)
    assert set(s.tolist()) == set(range(13, 21))  # 11 and 12 were overwritten: never sampled again
    counts = np.bincount(s - 13, minlength=8)
    assert counts.min() > 800 and counts.max() < 1200  # 1000 expected each (binomial sd ~ 30)


def test_vmapped_buffers_are_independent():
    cap = 4
    init = jax.vmap(lambda _: buffers.replay_init(_item(0), cap))(jnp.arange(2))
    add = jax.jit(jax.vmap(buffers.replay_add))
    # seed 0 gets ids 1.., seed 1 gets ids 101..; 3 adds of 3 wrap around twice
    buf = init
    for k in range(3):
        ids = np.stack([np.arange(1, 4) + 3 * k, np.arange(101, 104) + 3 * k])
        buf = add(buf, {"x": jnp.asarray(ids, jnp.float32), "v": jnp.asarray(np.stack([ids, ids], -1), jnp.int32)})
    np.testing.assert_array_equal(np.asarray(buf.pos), [1, 1])
    np.testing.assert_array_equal(np.asarray(buf.size), [4, 4])
    # naive ring after writing 1..9 into 4 slots: slot i holds the last id written to it
    expect = np.zeros(4)
    for j, i in enumerate(range(1, 10)):
        expect[j % 4] = i
    np.testing.assert_array_equal(np.asarray(buf.data["x"]), np.stack([expect, expect + 100]))
    s = jax.vmap(buffers.replay_sample, in_axes=(0, 0, None))(buf, jax.random.split(jax.random.PRNGKey(0), 2), 500)
    x = np.asarray(s["x"])
    assert set(x[0].astype(int)) == {6, 7, 8, 9} and set(x[1].astype(int)) == {106, 107, 108, 109}
