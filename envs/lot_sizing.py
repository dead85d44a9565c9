"""Multi-item, multi-machine stochastic lot sizing in JAX (the PDPPO benchmark).

Port of `SimplePlant` from the PDPPO reference (leokan92/pdppo, `code/Lot-sizing/envs/simplePlant.py`,
itself from EdoF90/discrete_lot_sizing) with its agent wrapper `SimplePlantSB` (observation =
inventory, reward = minus the cost).

Problem (I items, M machines, horizon T = 100 periods):
    C[m, i]  units of item i machine m makes per period (0 = machine cannot make the item)
    K[m, i]  setup cost when machine m switches to item i
    L[m, i]  units lost when machine m switches to item i
    h[i], p[i]  holding cost per unit per period, lost-sales cost per unit of unmet demand
    X_max[i]  inventory cap; demand d_i ~ Binomial(n, q) i.i.d. per item and period (n=20, q=0.4)

State: inventory x (int, 0..X_max after each step), machine setups sigma in {0..I}^M (0 = not set
up; not observed by default), period t. Action: MultiDiscrete([I+1] * M); a_m = 0 idles machine m
(its setup is lost), a_m = i >= 1 makes item i on machine m. One step:

    post-decision (deterministic):  for each machine m with a_m = i >= 1:
        if i != sigma_m: pay K[m,i], lose L[m,i] units, sigma_m <- i
        x_i += C[m,i] - loss            (infeasible pair: C = 0, so x_i decreases by the loss)
      idle machines: sigma_m <- 0.  Production is additive over machines (segment sum).
      s^x = x after production, before demand (may exceed X_max or be negative).
    stochastic: x <- x - d;  lost sales p_i * max(-x_i, 0);  x <- clip(x, 0, X_max)
      (the excess above X_max vanishes at no cost); holding h_i * x_i after demand.
    reward = -(setup + lost sales + holding);  t += 1;  terminated = (t == T).

Reaching the horizon is a termination (the problem has no costs after T; the reference resets
its returns there too); `truncated` is always False. Reset (as the reference's training loop):
inventory x_i ~ U{0..X_max_i - 1}, each machine set up for a random item it can make, t = 0
(`random_reset=False` starts from the instance's `initial_inventory` / `initial_setup` instead).
Demand is drawn each step (a sum of n Bernoulli(q) draws = an exact Binomial sample).

Observation: inventory x as float32 [I] (raw units, 0..100, like the reference), or
[x, sigma] with `observe_setup=True` (an earlier reference version).

`info` keys (besides the env API's final_observation / episode_return / episode_length):
    post_decision_obs     observation of the post-decision state s^x (inventory after production,
                          before demand; with observe_setup, the new setups), float32 like obs
    post_decision_reward  r^x = -(setup costs of this action): the deterministic part of the reward
    setup_cost, lost_sales_cost, holding_cost   the three cost terms of this step (>= 0)
    demand                the demand realised this step, int32 [I]
so reward == post_decision_reward - lost_sales_cost - holding_cost.

Registered names (instance = I items x M machines):
    lot-sizing/15x5, lot-sizing/20x10, lot-sizing/25x10, lot-sizing/25x15
        parameters drawn with numpy RandomState(seed) (seed=0 by default, `seed=` kwarg) from the
        reference generator's distributions (`cfg_env/generate_setting.py`):
          C: {0..40}, 0 w.p. 0.4, else uniform   K: {15..30}, 15 w.p. 0.2, else uniform
          L: {1,2,3}, 1 w.p. 0.7, else uniform   h = 0.01   X_max = 100   demand Binomial(20, 0.4)
          p: {0.1, 1.1} w.p. 1/2 each (the generator's `np.arange(0.1, 0.3 + 1)` gives these two
             values; the paper's instance files hold exactly 0.1 and 1.1)
          initial inventory {0..50}, 0 w.p. 0.05; initial setup {0..I}, 0 w.p. 0.4
        C is redrawn until every item can be made by some machine (the reference only warns).
    lot-sizing/file   needs `path=` to an instance file.
Every name also accepts `path=` (a JSON instance file) or `instance=` (a dict in that format) to
use given parameters verbatim, e.g. the paper's exact instances:
    envs.make("lot-sizing/15x5", path="../shared/data/lot_sizing/15x5.json")
The JSON format is the reference's (`setting_*.json`): time_horizon, n_items, n_machines,
initial_setup [M], machine_production [M][I], max_inventory_level [I], initial_inventory [I],
holding_costs [I], lost_sales_costs [I], demand_distribution {name: "binomial", n, p},
setup_costs [M][I], setup_loss [M][I]. A file or dict is checked when loaded (`validate_instance`:
format, array lengths, integers where units are counted, non-negative costs, capacities and losses,
max_inventory_level >= 1, initial values in range); any problem is a ValueError naming the file and
the field, which pdppo's `--instance-path` turns into exit status 2 before anything compiles.
"""
from __future__ import annotations

import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from . import register, spaces
from .core import Env

CONFIGS = {"15x5": (15, 5), "20x10": (20, 10), "25x10": (25, 10), "25x15": (25, 15)}


# ----------------------------------------------------------------------------- instances
def _min_biased(rng, n, lo, hi, p_lo, size):
    """Integers in {lo..hi}: lo with probability p_lo, the others uniformly (the reference's
    `generate_vector_min_bias`)."""
    choices = np.arange(lo, hi + 1)
    probs = np.full(len(choices), (1.0 - p_lo) / max(len(choices) - 1, 1))
    probs[0] = p_lo
    return rng.choice(choices, size=size, p=probs)


def generate_instance(n_items: int, n_machines: int, seed: int = 0, horizon: int = 100) -> dict:
    """A random instance in the reference's JSON format, deterministic in `seed`."""
    rng = np.random.RandomState(seed)
    I, M = n_items, n_machines
    initial_setup = _min_biased(rng, 0, 0, I, 0.4, M)
    while True:
        C = _min_biased(rng, 0, 0, 40, 0.4, (M, I))
        if (C.sum(0) > 0).all():
            break
    initial_inventory = _min_biased(rng, 0, 0, 50, 0.05, I)
    lost_sales = rng.choice([0.1, 1.1], size=I)
    K = _min_biased(rng, 0, 15, 30, 0.2, (M, I))
    L = _min_biased(rng, 0, 1, 3, 0.7, (M, I))
    return {
        "time_horizon": horizon, "n_items": I, "n_machines": M,
        "initial_setup": initial_setup.tolist(), "machine_production": C.tolist(),
        "max_inventory_level": [100] * I, "initial_inventory": initial_inventory.tolist(),
        "holding_costs": [0.01] * I, "lost_sales_costs": lost_sales.tolist(),
        "demand_distribution": {"name": "binomial", "n": 20, "p": 0.4},
        "setup_costs": K.tolist(), "setup_loss": L.tolist(),
    }


def load_instance(path: str) -> dict:
    """Read and validate a JSON instance file; every problem is a ValueError naming the file (and
    the field)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise ValueError(f"lot-sizing instance {path}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"lot-sizing instance {path}: is a directory, not a JSON file") from None
    except UnicodeDecodeError:
        raise ValueError(f"lot-sizing instance {path}: not a text (JSON) file") from None
    except OSError as e:
        raise ValueError(f"lot-sizing instance {path}: cannot be read ({e.strerror})") from None
    try:
        d = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"lot-sizing instance {path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})") from None
    validate_instance(d, str(path))
    return d


REQUIRED = ("time_horizon", "n_items", "n_machines", "initial_setup", "machine_production",
            "max_inventory_level", "initial_inventory", "holding_costs", "lost_sales_costs",
            "demand_distribution", "setup_costs", "setup_loss")


def validate_instance(d, source: str = "given as instance=") -> None:
    """Check an instance dict against the format and its physical constraints, raising ValueError
    "lot-sizing instance <source>: <field>...": every key present; numbers are JSON numbers (not
    strings), integers where the model counts units; time_horizon, n_items, n_machines,
    max_inventory_level >= 1; production, setup loss, costs >= 0 and finite; initial inventory in
    [0, max_inventory_level]; initial setup in [0, n_items]; arrays of n_items / n_machines x
    n_items entries; binomial demand with integer n >= 1 and p in [0, 1]."""
    where = f"lot-sizing instance {source}"

    def fail(msg):
        raise ValueError(f"{where}: {msg}")

    if not isinstance(d, dict):
        fail(f"must be a JSON object with the fields {', '.join(REQUIRED)} (got {type(d).__name__})")
    missing = [k for k in REQUIRED if k not in d]
    if missing:
        fail(f"lacks {', '.join(missing)}; see envs/lot_sizing.py for the format")

    def number(key, v, integer):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            fail(f"{key} must be {'an integer' if integer else 'a number'} (got {v!r}, a JSON {type(v).__name__})")
        if not np.isfinite(v):
            fail(f"{key} must be finite (got {v!r})")
        if integer and float(v) != int(v):
            fail(f"{key} must be an integer (got {v!r})")
        return int(v) if integer else float(v)

    def scalar(key, lo):
        v = number(key, d[key], True)
        if v < lo:
            fail(f"{key} must be >= {lo} (got {v})")
        return v

    scalar("time_horizon", 1)  # checked; the env reads it from the instance itself
    I, M = scalar("n_items", 1), scalar("n_machines", 1)

    def array(key, shape, integer, lo, hi=None, hi_name=None):
        v = d[key]
        dims = "[n_items]" if len(shape) == 1 else "[n_machines][n_items]"
        rows = [v] if len(shape) == 1 else v
        if not isinstance(v, list) or len(v) != shape[0] or (len(shape) == 2 and not all(
                isinstance(r, list) and len(r) == shape[1] for r in v)):
            if not isinstance(v, list):
                got = repr(v)
            elif len(shape) == 2 and all(isinstance(r, list) for r in v):
                got = f"{len(v)} rows of {'/'.join(str(n) for n in sorted({len(r) for r in v}))} entries"
            else:
                got = f"{len(v)} entries"
            fail(f"{key} must be a list {dims} of {' x '.join(map(str, shape))} numbers, as n_items = {I} and "
                 f"n_machines = {M} (got {got})")
        out = np.zeros(shape, np.int64 if integer else np.float64)
        for r, row in enumerate(rows):
            for c, x in enumerate(row):
                idx = f"{key}[{c}]" if len(shape) == 1 else f"{key}[{r}][{c}]"
                x = number(idx, x, integer)
                top = hi[c] if isinstance(hi, np.ndarray) else hi
                if x < lo or (top is not None and x > top):
                    bound = f">= {lo}" if top is None else f"in [{lo}, {hi_name or top}]"
                    fail(f"{idx} must be {bound} (got {x})")
                out[(c,) if len(shape) == 1 else (r, c)] = x
        return out

    max_inv = array("max_inventory_level", (I,), True, 1)
    array("initial_inventory", (I,), True, 0, max_inv, "max_inventory_level")
    array("holding_costs", (I,), False, 0)
    array("lost_sales_costs", (I,), False, 0)
    array("initial_setup", (M,), True, 0, I, "n_items")
    array("machine_production", (M, I), True, 0)
    array("setup_costs", (M, I), False, 0)
    array("setup_loss", (M, I), True, 0)
    dd = d["demand_distribution"]
    if not isinstance(dd, dict) or dd.get("name") != "binomial":
        fail(f"demand_distribution must be {{\"name\": \"binomial\", \"n\": ..., \"p\": ...}} "
             f"(only binomial demand is supported; got {dd!r})")
    for k in ("n", "p"):
        if k not in dd:
            fail(f"demand_distribution lacks {k}")
    n = number("demand_distribution.n", dd["n"], True)
    p = number("demand_distribution.p", dd["p"], False)
    if n < 1:
        fail(f"demand_distribution.n must be >= 1 (got {n})")
    if not 0.0 <= p <= 1.0:
        fail(f"demand_distribution.p must be in [0, 1] (got {p})")


# ----------------------------------------------------------------------------- env
class LotSizingState(NamedTuple):
    inventory: jax.Array  # int32 [I]
    setup: jax.Array  # int32 [M], 0 = not set up, i >= 1 = item i
    t: jax.Array  # int32 []


class LotSizing(Env):
    def __init__(self, instance: dict, name: str = "lot-sizing", random_reset: bool = True,
                 observe_setup: bool = False, source: str = "given as instance="):
        validate_instance(instance, source)
        self.name = name
        self.instance = instance
        self.n_items = I = int(instance["n_items"])
        self.n_machines = M = int(instance["n_machines"])
        self.horizon = int(instance["time_horizon"])
        self.max_episode_steps = self.horizon
        self.random_reset = bool(random_reset)
        self.observe_setup = bool(observe_setup)
        self.production = jnp.asarray(instance["machine_production"], jnp.int32)  # [M, I]
        self.setup_costs = jnp.asarray(instance["setup_costs"], jnp.float32)  # [M, I]
        self.setup_loss = jnp.asarray(instance["setup_loss"], jnp.int32)  # [M, I]
        self.max_inventory = jnp.asarray(instance["max_inventory_level"], jnp.int32)
        self.holding_costs = jnp.asarray(instance["holding_costs"], jnp.float32)
        self.lost_sales_costs = jnp.asarray(instance["lost_sales_costs"], jnp.float32)
        self.initial_inventory = jnp.asarray(instance["initial_inventory"], jnp.int32)
        self.initial_setup = jnp.asarray(instance["initial_setup"], jnp.int32)
        self.demand_n = int(instance["demand_distribution"]["n"])
        self.demand_p = float(instance["demand_distribution"]["p"])
        self._feasible = np.asarray(instance["machine_production"]) > 0  # [M, I]
        self.action_space = spaces.MultiDiscrete(tuple([I + 1] * M))
        obs_dim = I + (M if self.observe_setup else 0)
        high = np.concatenate([np.asarray(instance["max_inventory_level"], np.float32),
                               np.full(M if self.observe_setup else 0, I, np.float32)])
        self.observation_space = spaces.Box(np.zeros(obs_dim, np.float32), high, (obs_dim,))

    # -- pieces, public so tests and agents can replay the deterministic map
    def observe(self, inventory, setup):
        x = jnp.asarray(inventory, jnp.float32)
        if self.observe_setup:
            x = jnp.concatenate([x, jnp.asarray(setup, jnp.float32)])
        return x

    def post_decision(self, inventory, setup, action):
        """Deterministic production step: returns (post_inventory, new_setup, setup_cost)."""
        action = jnp.asarray(action, jnp.int32)
        producing = action > 0
        item = jnp.maximum(action - 1, 0)  # [M]
        machines = jnp.arange(self.n_machines)
        switch = producing & (action != setup)
        cost = jnp.sum(jnp.where(switch, self.setup_costs[machines, item], 0.0))
        loss = jnp.where(switch, self.setup_loss[machines, item], 0)
        amount = jnp.where(producing, self.production[machines, item] - loss, 0)
        post = inventory + jax.ops.segment_sum(amount, item, num_segments=self.n_items)
        new_setup = jnp.where(producing, action, 0)
        return post, new_setup, cost

    def sample_demand(self, key):
        u = jax.random.uniform(key, (self.n_items, self.demand_n))
        return jnp.sum(u < self.demand_p, axis=-1).astype(jnp.int32)

    def satisfy_demand(self, post_inventory, demand):
        """Stochastic step: returns (inventory, lost_sales_cost, holding_cost)."""
        x = post_inventory - demand
        lost = jnp.maximum(-x, 0)
        x = jnp.clip(x, 0, self.max_inventory)
        return x, jnp.sum(lost * self.lost_sales_costs), jnp.sum(x * self.holding_costs)

    # -- Env API
    def _reset(self, key):
        if self.random_reset:
            k_inv, k_set = jax.random.split(key)
            inventory = jax.random.randint(k_inv, (self.n_items,), 0, self.max_inventory, dtype=jnp.int32)
            # a random feasible item per machine (0 if the machine can make nothing)
            logits = jnp.where(jnp.asarray(self._feasible), 0.0, -jnp.inf)
            choice = jax.random.categorical(k_set, logits, axis=-1)
            setup = jnp.where(jnp.asarray(self._feasible.any(1)), choice + 1, 0).astype(jnp.int32)
        else:
            inventory, setup = self.initial_inventory, self.initial_setup
        state = LotSizingState(inventory, setup, jnp.zeros((), jnp.int32))
        return self.observe(inventory, setup), state

    def _step(self, key, state, action):
        k_demand, k_reset = jax.random.split(key)
        post, setup, setup_cost = self.post_decision(state.inventory, state.setup, action)
        demand = self.sample_demand(k_demand)
        inventory, lost_cost, hold_cost = self.satisfy_demand(post, demand)
        reward = -(setup_cost + lost_cost + hold_cost)
        t = state.t + 1
        terminated = t >= self.horizon
        final_obs = self.observe(inventory, setup)
        reset_obs, reset_state = self._reset(k_reset)
        next_state = jax.tree.map(lambda a, b: jnp.where(terminated, a, b), reset_state,
                                  LotSizingState(inventory, setup, t))
        obs = jnp.where(terminated, reset_obs, final_obs)
        info = {
            "post_decision_obs": self.observe(post, setup),
            "post_decision_reward": -setup_cost,
            "setup_cost": setup_cost,
            "lost_sales_cost": lost_cost,
            "holding_cost": hold_cost,
            "demand": demand,
        }
        return obs, next_state, reward, terminated, jnp.zeros((), bool), final_obs, info


def _ctor(config: str | None):
    def make(path: str | None = None, instance: dict | None = None, seed: int = 0,
             random_reset: bool = True, observe_setup: bool = False) -> LotSizing:
        if path is not None and instance is not None:
            raise ValueError("lot-sizing: give `path=` or `instance=`, not both")
        if path is not None:
            inst = load_instance(path)
        elif instance is not None:
            inst = dict(instance)
        elif config is None:
            raise ValueError("lot-sizing/file needs path= (a JSON instance file in the reference's format)")
        else:
            inst = generate_instance(*CONFIGS[config], seed=seed)
        name = f"lot-sizing/{config or 'file'}"
        source = str(path) if path is not None else ("given as instance=" if instance is not None else f"{name} seed {seed}")
        return LotSizing(inst, name=name, random_reset=random_reset, observe_setup=observe_setup, source=source)

    return make


for _cfg in CONFIGS:
    register(f"lot-sizing/{_cfg}", _ctor(_cfg))
register("lot-sizing/file", _ctor(None))
