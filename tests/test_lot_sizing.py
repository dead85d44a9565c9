"""Lot-sizing and post-decision FrozenLake envs: hand-computed steps, the vectorised production
against a sequential machine loop, the reward split, demand moments, auto-reset and horizon."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rlx.envs as envs
from rlx.envs.core import EpisodeStats, State
from rlx.envs.frozen_lake import LakeState
from rlx.envs.lot_sizing import CONFIGS, LotSizingState, generate_instance

pytestmark = pytest.mark.timeout(600)

DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "lot_sizing")


def tiny_instance(demand_n=3, demand_p=1.0):
    """2 items, 1 machine; demand_p = 1 makes the demand exactly demand_n per item."""
    return {
        "time_horizon": 100, "n_items": 2, "n_machines": 1, "initial_setup": [0],
        "machine_production": [[10, 5]], "max_inventory_level": [100, 100], "initial_inventory": [5, 0],
        "holding_costs": [0.01, 0.02], "lost_sales_costs": [1.0, 2.0],
        "demand_distribution": {"name": "binomial", "n": demand_n, "p": demand_p},
        "setup_costs": [[20.0, 30.0]], "setup_loss": [[2, 1]],
    }


def state_of(inv, setup, t=0):
    inner = LotSizingState(jnp.asarray(inv, jnp.int32), jnp.asarray(setup, jnp.int32), jnp.asarray(t, jnp.int32))
    return State(inner, EpisodeStats(jnp.zeros(()), jnp.zeros((), jnp.int32)))


def test_hand_computed_steps():
    env = envs.make("lot-sizing/file", instance=tiny_instance())
    step = jax.jit(env.step)
    key = jax.random.PRNGKey(0)

    # switch from no setup to item 1: pay K=20, lose L=2 units; demand 3 each; item 2 short by 3 (p=2)
    obs, st, r, term, trunc, info = step(key, state_of([5, 0], [0]), jnp.array([1]))
    np.testing.assert_array_equal(info["post_decision_obs"], [13.0, 0.0])  # 5 + 10 - 2
    np.testing.assert_array_equal(st.inner.inventory, [10, 0])
    np.testing.assert_array_equal(st.inner.setup, [1])
    assert float(info["setup_cost"]) == 20.0 and float(info["post_decision_reward"]) == -20.0
    assert float(info["lost_sales_cost"]) == pytest.approx(6.0)
    assert float(info["holding_cost"]) == pytest.approx(0.10)
    assert float(r) == pytest.approx(-26.10, abs=1e-5)
    assert not bool(term) and not bool(trunc)

    # keep the setup: no cost, full production
    obs, st, r, *_, info = step(key, st, jnp.array([1]))
    np.testing.assert_array_equal(info["post_decision_obs"], [20.0, 0.0])
    np.testing.assert_array_equal(st.inner.inventory, [17, 0])
    assert float(info["setup_cost"]) == 0.0
    assert float(r) == pytest.approx(-(6.0 + 0.17), abs=1e-5)

    # idle: setup lost, nothing made
    obs, st, r, *_, info = step(key, st, jnp.array([0]))
    np.testing.assert_array_equal(st.inner.setup, [0])
    np.testing.assert_array_equal(st.inner.inventory, [14, 0])
    assert float(r) == pytest.approx(-(6.0 + 0.14), abs=1e-5)

    # producing again after idling pays the setup again
    obs, st, r, *_, info = step(key, st, jnp.array([1]))
    assert float(info["setup_cost"]) == 20.0
    np.testing.assert_array_equal(info["post_decision_obs"], [22.0, 0.0])  # 14 + 10 - 2

    # switching item: K[0,1] = 30, L = 1: item 2 gets 5 - 1 = 4, demand 3 -> 1 left, no lost sales
    obs, st, r, *_, info = step(key, state_of([50, 0], [1]), jnp.array([2]))
    np.testing.assert_array_equal(st.inner.inventory, [47, 1])
    assert float(r) == pytest.approx(-(30.0 + 0.47 + 0.02), abs=1e-5)

    # above the cap: truncated to 100 at no cost
    obs, st, r, *_, info = step(key, state_of([98, 10], [1]), jnp.array([1]))
    np.testing.assert_array_equal(info["post_decision_obs"], [108.0, 10.0])
    np.testing.assert_array_equal(st.inner.inventory, [100, 7])
    assert float(info["lost_sales_cost"]) == 0.0
    assert float(r) == pytest.approx(-(1.0 + 0.14), abs=1e-5)

    # infeasible pair (C = 0) produces minus the setup loss
    inst = tiny_instance()
    inst["machine_production"] = [[0, 5]]
    env0 = envs.make("lot-sizing/file", instance=inst)
    obs, st, r, *_, info = jax.jit(env0.step)(key, state_of([1, 9], [2]), jnp.array([1]))
    np.testing.assert_array_equal(info["post_decision_obs"], [-1.0, 9.0])
    assert float(info["lost_sales_cost"]) == pytest.approx(4.0 * 1.0)  # 1 - 2 - 3 = -4 short


def reference_post_decision(inst, inventory, setup, action):
    """The reference's sequential machine loop (`SimplePlant._post_decision`)."""
    inventory, setup = list(inventory), list(setup)
    cost = 0.0
    for m, a in enumerate(action):
        if a != 0:
            loss = 0
            if setup[m] != a:
                cost += inst["setup_costs"][m][a - 1]
                loss = inst["setup_loss"][m][a - 1]
            setup[m] = a
            inventory[a - 1] += inst["machine_production"][m][a - 1] - loss
        else:
            setup[m] = 0
    return inventory, setup, cost


def test_vectorised_production_matches_sequential_loop():
    rng = np.random.RandomState(1)
    inst = generate_instance(4, 6, seed=3)  # 6 machines, 4 items: machines often pick the same item
    env = envs.make("lot-sizing/file", instance=inst)
    pd = jax.jit(env.post_decision)
    assert (np.asarray(inst["machine_production"]) == 0).any()  # infeasible pairs occur
    for _ in range(200):
        inv = rng.randint(0, 101, 4)
        setup = rng.randint(0, 5, 6)
        action = rng.randint(0, 5, 6)
        post, new_setup, cost = pd(jnp.asarray(inv), jnp.asarray(setup), jnp.asarray(action))
        ref_inv, ref_setup, ref_cost = reference_post_decision(inst, inv, setup, action)
        np.testing.assert_array_equal(post, ref_inv)
        np.testing.assert_array_equal(new_setup, ref_setup)
        assert float(cost) == pytest.approx(ref_cost)


def test_reward_split_and_post_decision_state_on_a_rollout():
    env = envs.make("lot-sizing/15x5")
    inst = env.instance
    key = jax.random.PRNGKey(4)
    obs, state = env.reset(key)
    step = jax.jit(env.step)
    for i in range(150):  # crosses one episode end
        key, ka, ks = jax.random.split(key, 3)
        action = env.action_space.sample(ka)
        inv, setup = np.asarray(state.inner.inventory), np.asarray(state.inner.setup)
        obs, state2, r, term, trunc, info = step(ks, state, action)
        # agent-side replay of the deterministic map gives the env's s^x and r^x
        ref_inv, ref_setup, ref_cost = reference_post_decision(inst, inv, setup, np.asarray(action))
        np.testing.assert_array_equal(info["post_decision_obs"], np.asarray(ref_inv, np.float32))
        assert float(info["post_decision_reward"]) == pytest.approx(-ref_cost)
        # r = r^x + r^pre, r^pre = -(lost sales + holding)
        assert float(r) == pytest.approx(float(info["post_decision_reward"] - info["lost_sales_cost"] - info["holding_cost"]), abs=1e-3)
        # inventory after demand = clip(post - demand, 0, 100)
        expect = np.clip(np.asarray(ref_inv) - np.asarray(info["demand"]), 0, 100)
        np.testing.assert_array_equal(info["final_observation"], expect.astype(np.float32))
        lost = np.maximum(np.asarray(info["demand"]) - np.asarray(ref_inv), 0)
        assert float(info["lost_sales_cost"]) == pytest.approx(float(lost @ np.asarray(inst["lost_sales_costs"])), rel=1e-5, abs=1e-4)
        if not bool(term):
            np.testing.assert_array_equal(state2.inner.inventory, expect)
        state = state2


def test_demand_moments():
    env = envs.make("lot-sizing/15x5")
    d = jax.vmap(env.sample_demand)(jax.random.split(jax.random.PRNGKey(0), 20000))
    d = np.asarray(d, np.float64)
    assert d.min() >= 0 and d.max() <= 20
    assert d.mean() == pytest.approx(8.0, abs=0.03)  # n p; standard error ~0.004
    assert d.var() == pytest.approx(4.8, abs=0.06)  # n p (1 - p); standard error ~0.012


def test_auto_reset_and_horizon():
    env = envs.make("lot-sizing/15x5")
    feasible = np.asarray(env.instance["machine_production"]) > 0

    def body(carry, key):
        obs, state = carry
        ka, ks = jax.random.split(key)
        obs2, state2, r, term, trunc, info = env.step(ks, state, env.action_space.sample(ka))
        return (obs2, state2), (term, trunc, info["episode_length"], info["episode_return"], r, obs2, state2.inner.setup)

    obs, state = env.reset(jax.random.PRNGKey(1))
    _, (term, trunc, ep_len, ep_ret, r, obs_seq, setups) = jax.jit(
        lambda: jax.lax.scan(body, (obs, state), jax.random.split(jax.random.PRNGKey(2), 250)))()
    term, ep_len = np.asarray(term), np.asarray(ep_len)
    np.testing.assert_array_equal(np.flatnonzero(term), [99, 199])
    assert not np.asarray(trunc).any()
    np.testing.assert_array_equal(ep_len[term], [100, 100])
    r = np.asarray(r)
    np.testing.assert_allclose(np.asarray(ep_ret)[term], [r[:100].sum(), r[100:200].sum()], rtol=1e-4)
    # after a reset: inventory U{0..99}, every machine set up for an item it can make
    for t in (99, 199):
        o = np.asarray(obs_seq[t])
        assert o.min() >= 0 and o.max() <= 99
        s = np.asarray(setups[t])
        assert (s >= 1).all() and feasible[np.arange(len(s)), s - 1].all()


def test_generated_instances_follow_the_generator():
    for name, (I, M) in CONFIGS.items():
        a, b = generate_instance(I, M, seed=0), generate_instance(I, M, seed=0)
        assert a == b  # deterministic in the seed
        assert a != generate_instance(I, M, seed=1)
        C, K, L = (np.asarray(a[k]) for k in ("machine_production", "setup_costs", "setup_loss"))
        assert C.shape == K.shape == L.shape == (M, I)
        assert C.min() >= 0 and C.max() <= 40 and (C.sum(0) > 0).all()
        assert K.min() >= 15 and K.max() <= 30 and set(np.unique(L)) <= {1, 2, 3}
        assert set(a["lost_sales_costs"]) <= {0.1, 1.1} and set(a["holding_costs"]) == {0.01}
        env = envs.make(f"lot-sizing/{name}")
        assert env.action_space.nvec == tuple([I + 1] * M) and env.observation_space.shape == (I,)
    # the distributions on a large draw: P(C = 0) = 0.4, P(K = 15) = 0.2, P(L = 1) = 0.7
    big = generate_instance(400, 50, seed=0)
    assert (np.asarray(big["machine_production"]) == 0).mean() == pytest.approx(0.4, abs=0.01)
    assert (np.asarray(big["setup_costs"]) == 15).mean() == pytest.approx(0.2, abs=0.01)
    assert (np.asarray(big["setup_loss"]) == 1).mean() == pytest.approx(0.7, abs=0.01)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_paper_instance_files_load_verbatim(name):
    path = os.path.join(DATA, f"{name}.json")
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (public data kept outside the repo)")
    with open(path) as f:
        inst = json.load(f)
    env = envs.make(f"lot-sizing/{name}", path=path)
    np.testing.assert_array_equal(env.production, inst["machine_production"])
    np.testing.assert_array_equal(env.setup_costs, np.asarray(inst["setup_costs"], np.float32))
    np.testing.assert_array_equal(env.lost_sales_costs, np.asarray(inst["lost_sales_costs"], np.float32))
    assert env.action_space.nvec == tuple([inst["n_items"] + 1] * inst["n_machines"])
    fixed = envs.make("lot-sizing/file", path=path, random_reset=False)
    obs, state = fixed.reset(jax.random.PRNGKey(0))
    np.testing.assert_array_equal(obs, np.asarray(inst["initial_inventory"], np.float32))
    np.testing.assert_array_equal(state.inner.setup, inst["initial_setup"])


def test_bad_instance_is_rejected():
    inst = tiny_instance()
    inst["setup_costs"] = [[1.0]]
    with pytest.raises(ValueError, match="setup_costs"):
        envs.make("lot-sizing/file", instance=inst)
    with pytest.raises(ValueError, match="path="):
        envs.make("lot-sizing/file")


# ----------------------------------------------------------------------------- FrozenLake
LAKE = ["SFFF", "FHFH", "FFFH", "HFFG"]


def lake_state(cell, t=0):
    return State(LakeState(jnp.asarray(cell, jnp.int32), jnp.asarray(t, jnp.int32)),
                 EpisodeStats(jnp.zeros(()), jnp.zeros((), jnp.int32)))


def test_lake_post_decision_state_is_deterministic_and_slip_rate():
    env = envs.make("frozen-lake-pd", map=LAKE)
    keys = jax.random.split(jax.random.PRNGKey(0), 4000)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None)))
    moves = {0: (0, -1), 1: (1, 0), 2: (0, 1), 3: (-1, 0)}
    slips = []
    for cell in (0, 2, 4, 6, 9, 13):  # frozen cells
        r0, c0 = divmod(cell, 4)
        for a in range(4):
            obs, st, rew, term, trunc, info = step(keys, lake_state(cell), jnp.asarray(a))
            post = np.asarray(info["post_decision_obs"]).argmax(-1)
            dr, dc = moves[a]
            expect = min(max(r0 + dr, 0), 3) * 4 + min(max(c0 + dc, 0), 3)
            assert (post == expect).all()
            if LAKE[expect // 4][expect % 4] != "G":
                slips.append(np.asarray(info["slipped"]))
            # where no slip happened the agent stays at s^x
            final = np.asarray(info["final_observation"]).argmax(-1)
            stay = ~np.asarray(info["slipped"])
            assert (final[stay] == expect).all()
            # r^x: 1/(1 + Manhattan distance), minus 1/(rows+cols) on a hole
            er, ec = divmod(expect, 4)
            r1 = 1.0 / (1 + (3 - er) + (3 - ec)) - (LAKE[er][ec] == "H") / 8.0
            if LAKE[er][ec] == "G":
                r1 = 1.0
            np.testing.assert_allclose(info["post_decision_reward"], r1, rtol=1e-6)
            np.testing.assert_allclose(np.asarray(rew)[stay], r1, rtol=1e-6)
    rate = np.concatenate(slips).mean()
    assert rate == pytest.approx(0.5, abs=0.01)  # ~90k draws


def test_lake_goal_terminates_and_holes_end_the_episode():
    env = envs.make("frozen-lake-pd", map=LAKE)
    keys = jax.random.split(jax.random.PRNGKey(1), 2000)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None)))
    # first move into G (cell 14 -> right -> 15): reward exactly 1, terminated, no second move
    obs, st, rew, term, trunc, info = step(keys, lake_state(14), jnp.asarray(2))
    assert np.asarray(term).all() and np.allclose(rew, 1.0) and not np.asarray(info["slipped"]).any()
    np.testing.assert_array_equal(np.asarray(obs).argmax(-1), 0)  # auto-reset to S
    # cell 10 -> down -> 14 (r1 = 1/2); a slip to the right reaches G: reward 1 + 1/2, terminated
    obs, st, rew, term, trunc, info = step(keys, lake_state(10), jnp.asarray(1))
    final = np.asarray(info["final_observation"]).argmax(-1)
    goal = final == 15
    assert goal.any() and np.asarray(term)[goal].all() and np.allclose(np.asarray(rew)[goal], 1.5)
    assert not np.asarray(term)[final != 15].any()
    # from a hole: reward 0, terminated, s^x = the hole
    obs, st, rew, term, trunc, info = step(keys, lake_state(5), jnp.asarray(0))
    assert np.asarray(term).all() and np.allclose(rew, 0.0)
    np.testing.assert_array_equal(np.asarray(info["post_decision_obs"]).argmax(-1), 5)
    # time limit: truncated after max_steps
    obs, st, rew, term, trunc, info = step(keys, lake_state(0, t=99), jnp.asarray(3))
    assert np.asarray(trunc).all() and not np.asarray(term).any()


def test_lake_random_map_and_smoke():
    env = envs.make("frozen-lake-pd")
    assert len(env.desc) == 8 and env.desc[0][0] == "S" and env.desc[-1][-1] == "G"
    assert env.desc == envs.make("frozen-lake-pd").desc  # deterministic in map_seed
    assert env.observation_space.shape == (64,) and env.action_kind == "discrete"
    obs, state = jax.vmap(env.reset)(jax.random.split(jax.random.PRNGKey(0), 8))

    def body(c, key):
        obs, state = c
        ka, ks = jax.random.split(key)
        a = jax.random.randint(ka, (8,), 0, 4)
        obs, state, r, te, tr, info = jax.vmap(env.step)(jax.random.split(ks, 8), state, a)
        return (obs, state), (r, te | tr, info["episode_length"])

    _, (r, done, ep_len) = jax.jit(lambda: jax.lax.scan(body, (obs, state), jax.random.split(jax.random.PRNGKey(1), 300)))()
    assert np.isfinite(np.asarray(r)).all() and np.asarray(done).sum() > 0
    assert np.asarray(ep_len).max() <= 100
