"""Two-stage stochastic FrozenLake with a post-decision state (the PDPPO "Lake application").

Port of `code/Lake application/envs/frozen_lake.py` from the PDPPO reference (leokan92/pdppo).
An 8x8 map (S start, F frozen, H hole, G goal) drawn like gym's `generate_random_map(size=8,
p=0.8)` with numpy RandomState(`map_seed`) and checked for a path from S to G by DFS
(`map=` takes your own list of row strings instead). Actions: 0 left, 1 down, 2 right, 3 up.

One step from a frozen cell s with action a:
  1. deterministic move in direction a (walls clip): the landing cell is the post-decision state
     s^x. Reward r1 = 1 if s^x is G (the episode terminates here, no second move), otherwise
     1 / (1 + Manhattan distance from s^x to G), minus 1 / (rows + cols) if s^x is a hole;
  2. with probability `slip` (0.5) a second move from s^x in a direction drawn from a fixed
     per-cell distribution (Dirichlet(1,1,1,1) per cell, numpy seed 42 as in the reference),
     with reward r2 by the same rule, added to r1; landing on G terminates. Otherwise the agent
     stays at s^x.
Landing in a hole does not end the step's episode; any action from a hole (or the goal) keeps
the agent there with reward 0 and terminates. Episodes are truncated after 100 steps.

Observation: one-hot of the 64 cells (float32). `info` keys:
    post_decision_obs     one-hot of s^x (for a step from a hole or the goal: the cell itself)
    post_decision_reward  r1, the deterministic first-move reward (0 from a hole or the goal)
    slipped               whether the second move happened (bool)
The reference's `get_post_decision_state` returns the proximity part of r1 only (without the
hole penalty); here r^x is the whole deterministic reward, so reward - r^x is the second move's.

Registered as `frozen-lake-pd` (kwargs: map_seed=0, size=8, p_frozen=0.8, slip=0.5,
max_steps=100, map=None).
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import register, spaces
from .core import Env

_MOVES = np.array([[0, -1], [1, 0], [0, 1], [-1, 0]])  # left, down, right, up as (drow, dcol)


def generate_random_map(size: int = 8, p: float = 0.8, seed: int = 0) -> list:
    """A random map with a path from S (top-left) to G (bottom-right), as gym's generator."""
    rng = np.random.RandomState(seed)

    def is_valid(res):
        frontier, discovered = [(0, 0)], set()
        while frontier:
            r, c = frontier.pop()
            if (r, c) in discovered:
                continue
            discovered.add((r, c))
            for dr, dc in ((1, 0), (0, 1), (-1, 0), (0, -1)):
                rn, cn = r + dr, c + dc
                if 0 <= rn < size and 0 <= cn < size:
                    if res[rn][cn] == "G":
                        return True
                    if res[rn][cn] != "H":
                        frontier.append((rn, cn))
        return False

    while True:
        res = rng.choice(["F", "H"], (size, size), p=[p, 1 - p])
        res[0][0], res[-1][-1] = "S", "G"
        if is_valid(res):
            return ["".join(row) for row in res]


class LakeState(NamedTuple):
    cell: jax.Array  # int32 []
    t: jax.Array  # int32 []


class FrozenLakePD(Env):
    def __init__(self, map_seed: int = 0, size: int = 8, p_frozen: float = 0.8, slip: float = 0.5,
                 max_steps: int = 100, map: list | None = None):
        desc = np.asarray([list(r) for r in (map if map is not None else generate_random_map(size, p_frozen, map_seed))])
        self.desc = ["".join(r) for r in desc]
        self.nrow, self.ncol = nrow, ncol = desc.shape
        self.name = "frozen-lake-pd"
        self.n_cells = n = nrow * ncol
        self.slip = float(slip)
        self.max_episode_steps = int(max_steps)
        self.observation_space = spaces.Box(0.0, 1.0, (n,))
        self.action_space = spaces.Discrete(4)
        flat = desc.reshape(-1)
        self.start = int(np.flatnonzero(flat == "S")[0])
        goal = np.flatnonzero(flat == "G")
        self.goal = int(goal[0])
        gr, gc = divmod(self.goal, ncol)
        # tables: next cell and its reward for every (cell, direction)
        nxt = np.zeros((n, 4), np.int32)
        rew = np.zeros((n, 4), np.float32)
        for s in range(n):
            r, c = divmod(s, ncol)
            for a, (dr, dc) in enumerate(_MOVES):
                rn, cn = min(max(r + dr, 0), nrow - 1), min(max(c + dc, 0), ncol - 1)
                s2 = rn * ncol + cn
                nxt[s, a] = s2
                if flat[s2] == "G":
                    rew[s, a] = 1.0
                else:
                    rew[s, a] = 1.0 / (1.0 + abs(gr - rn) + abs(gc - cn)) - (flat[s2] == "H") / (nrow + ncol)
        self.next_cell = jnp.asarray(nxt)
        self.move_reward = jnp.asarray(rew)
        self.is_hole = jnp.asarray(flat == "H")
        self.is_goal = jnp.asarray(flat == "G")
        self.slip_probs = jnp.asarray(np.random.RandomState(42).dirichlet(np.ones(4), size=(nrow, ncol)).reshape(n, 4),
                                      jnp.float32)

    def observe(self, cell):
        return jax.nn.one_hot(cell, self.n_cells, dtype=jnp.float32)

    def post_decision(self, cell, action):
        """Deterministic first move: (post-decision cell, its reward r1, reached goal)."""
        stuck = self.is_hole[cell] | self.is_goal[cell]
        c1 = jnp.where(stuck, cell, self.next_cell[cell, action])
        r1 = jnp.where(stuck, 0.0, self.move_reward[cell, action])
        return c1, r1, stuck

    def _reset(self, key):
        state = LakeState(jnp.asarray(self.start, jnp.int32), jnp.zeros((), jnp.int32))
        return self.observe(state.cell), state

    def _step(self, key, state, action):
        k_slip, k_dir = jax.random.split(key)
        action = jnp.asarray(action, jnp.int32)
        c1, r1, stuck = self.post_decision(state.cell, action)
        goal1 = self.is_goal[c1] & ~stuck
        slipped = (jax.random.uniform(k_slip) < self.slip) & ~stuck & ~goal1
        d = jax.random.categorical(k_dir, jnp.log(self.slip_probs[c1]))
        c2 = jnp.where(slipped, self.next_cell[c1, d], c1)
        r2 = jnp.where(slipped, self.move_reward[c1, d], 0.0)
        terminated = stuck | self.is_goal[c2]
        t = state.t + 1
        truncated = (t >= self.max_episode_steps) & ~terminated
        done = terminated | truncated
        final_obs = self.observe(c2)
        reset_obs, reset_state = self._reset(key)
        next_state = jax.tree.map(lambda a, b: jnp.where(done, a, b), reset_state, LakeState(c2, t))
        obs = jnp.where(done, reset_obs, final_obs)
        info = {"post_decision_obs": self.observe(c1), "post_decision_reward": r1, "slipped": slipped}
        return obs, next_state, r1 + r2, terminated, truncated, final_obs, info


register("frozen-lake-pd", FrozenLakePD)
