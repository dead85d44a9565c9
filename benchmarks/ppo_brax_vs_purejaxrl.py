"""PPO on brax: rlx `algorithms/ppo.py` vs PureJaxRL `ppo_continuous_action.py`, same settings and
env-step budget, return at that budget and time, one process at a time.

PureJaxRL's continuous settings (its `__main__` config) are rlx's `brax/*` preset: 2048 envs x 10
steps, 4 epochs x 32 minibatches, Adam 3e-4 constant, clip 0.2, no entropy bonus, 2x256 tanh, obs
and reward normalisation, brax's `positional` backend and cached auto-reset (each env restarts
from its first state; both PureJaxRL's BraxGymnaxWrapper defaults) and 1000-step episodes.
`--autoreset fresh` runs rlx with a new initial state per episode instead (its preset before
2026-11-24). Known difference, kept: PureJaxRL treats the time limit as a termination; rlx
bootstraps from the final observation (its default).

PureJaxRL runs from a copy outside the repo (`--ref`, e.g. the one benchmarks/reference/setup.sh
makes; only `purejaxrl/ppo_continuous_action.py` and `wrappers.py` are read) in this interpreter,
which has real brax; `wrappers.py` imports navix for MiniGrid, so an empty module stands in for it.
Both sides: `jax.jit(jax.vmap(train))` over `split(PRNGKey(0), seeds)` on one device, compile
timed apart from the run; with `--sharded` rlx also runs with the seed axis split over the CPU
devices it asks for (one per core), as its runner does. Return: mean return of the training episodes that ended in the last
`--window` fraction of updates (default 25%; both sides log every finished episode).

    python benchmarks/ppo_brax_vs_purejaxrl.py --ref /tmp/ref --env hopper --steps 1e6 --seeds 1
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REF_CHILD = r"""
import json, sys
sys.path[:0] = [%(stub)r, %(purejaxrl)r, %(here)r]
import jax, numpy as np
import ppo_continuous_action as pca
from timing import compile_and_run
config = {"LR": 3e-4, "NUM_ENVS": 2048, "NUM_STEPS": 10, "TOTAL_TIMESTEPS": %(steps)d, "UPDATE_EPOCHS": 4,
          "NUM_MINIBATCHES": 32, "GAMMA": 0.99, "GAE_LAMBDA": 0.95, "CLIP_EPS": 0.2, "ENT_COEF": 0.0,
          "VF_COEF": 0.5, "MAX_GRAD_NORM": 0.5, "ACTIVATION": "tanh", "ENV_NAME": %(env)r, "ANNEAL_LR": False,
          "NORMALIZE_ENV": True, "DEBUG": False}
keys = jax.random.split(jax.random.PRNGKey(0), %(seeds)d)
out, times = compile_and_run(jax.vmap(pca.make_train(config)), keys)
info = jax.device_get(out["metrics"])  # [seeds, updates, steps, envs]
n_upd = info["returned_episode"].shape[1]
w0 = int(np.floor((1 - %(window)r) * n_upd))
done = np.asarray(info["returned_episode"])[:, w0:]
ret = np.asarray(info["returned_episode_returns"])[:, w0:]
final = [(ret[i][done[i]].mean() if done[i].any() else float("nan")) for i in range(done.shape[0])]
print("RESULT " + json.dumps(dict(**times, updates=n_upd, final_return=[float(x) for x in final],
                                  episodes_in_window=done.reshape(done.shape[0], -1).sum(1).tolist(),
                                  jax=jax.__version__)))
"""

RLX_CHILD = r"""
import json, sys
sys.path.insert(0, %(here)r)
import jax, numpy as np
import rlx.devices; rlx.devices.use_all_cpu_cores()  # one CPU device per core, as the rlx command line does
from rlx.algorithms import ppo
from timing import compile_and_run
env = "brax/" + %(env)r
cfg = ppo.Config(**{**ppo.preset(env), "env": env, "env_autoreset": %(autoreset)r, "total_timesteps": %(steps)d})
assert cfg.env_backend == "positional"  # the preset's, as PureJaxRL's BraxGymnaxWrapper
import rlx.config; rlx.config.validate(cfg)  # declared ranges, then the cross-field checks
t = ppo.make_train(cfg)
keys = jax.random.split(jax.random.PRNGKey(0), %(seeds)d)
devices = 1
if %(sharded)r:  # the seed axis over the CPU devices rlx asks for (one per core), as its runner does
    from rlx.run import shard_runs
    keys, devices = shard_runs(keys)
(state, m), times = compile_and_run(jax.vmap(t.train), keys)
m = jax.device_get(m)
w0 = int(np.floor((1 - %(window)r) * t.num_updates))
s, c = m["episode_return_sum"][:, w0:].sum(1), m["episode_count"][:, w0:].sum(1)
final = np.where(c > 0, s / np.maximum(c, 1), np.nan)
print("RESULT " + json.dumps(dict(**times, updates=int(t.num_updates), final_return=[float(x) for x in final],
                                  episodes_in_window=c.astype(int).tolist(), jax=jax.__version__, devices=devices)))
"""


def child(code):
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        raise SystemExit(f"child failed:\n{p.stderr[-3000:]}")
    return json.loads(lines[-1][7:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ref", default=os.environ.get("RLX_REF", "/tmp/ref"), help="folder holding purejaxrl/ (a copy outside the repo; default $RLX_REF, else /tmp/ref)")
    ap.add_argument("--env", default="hopper", help="brax env name (hopper, ant, ...)")
    ap.add_argument("--steps", type=float, default=1e6, help="env steps per seed")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--window", type=float, default=0.25,
                    help="final return = mean over training episodes that ended in this last fraction of updates "
                         "(2048 envs start together, so at small budgets few episodes end in the last 5%%)")
    ap.add_argument("--json", default=None, help="append the records to this file")
    ap.add_argument("--sharded", action="store_true", help="also run rlx with the seeds sharded over the CPU devices")
    ap.add_argument("--only", choices=["both", "ref", "rlx"], default="both", help="run one side only")
    ap.add_argument("--autoreset", choices=["cached", "fresh"], default="cached", help="rlx's brax auto-reset")
    a = ap.parse_args()
    purejaxrl = os.path.join(a.ref, "purejaxrl")
    if not os.path.exists(os.path.join(purejaxrl, "ppo_continuous_action.py")):
        raise SystemExit(f"{purejaxrl}/ppo_continuous_action.py not found: pass --ref (see benchmarks/reference)")
    stub = tempfile.mkdtemp(prefix="rlx-stub-")
    with open(os.path.join(stub, "navix.py"), "w") as f:
        f.write('"""Empty stand-in: PureJaxRL\'s wrappers.py imports navix (MiniGrid), unused for brax."""\n')
    fill = dict(here=os.path.dirname(os.path.abspath(__file__)), stub=stub, purejaxrl=purejaxrl, env=a.env, steps=int(a.steps), seeds=a.seeds, window=a.window,
                autoreset=a.autoreset)
    records = []
    sides = [("PureJaxRL ppo_continuous_action.py", REF_CHILD, False), (f"rlx ppo.py ({a.autoreset} resets)", RLX_CHILD, False)]
    if a.sharded and a.seeds > 1:
        sides.append((f"rlx ppo.py ({a.autoreset} resets), seeds sharded", RLX_CHILD, True))
    if a.only != "both":
        sides = [s for s in sides if s[0].startswith("PureJaxRL" if a.only == "ref" else "rlx")]
    for side, code, sharded in sides:
        load0 = " ".join(f"{x:.2f}" for x in os.getloadavg())
        r = child(code % dict(fill, sharded=sharded))
        r.update(side=side, env=a.env, steps=int(a.steps), seeds=a.seeds, window=a.window, load_before=load0,
                 load_after=" ".join(f"{x:.2f}" for x in os.getloadavg()),
                 time=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
        records.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n| side | env | steps/seed | seeds | CPU devices | compile s | run s | env steps/s | "
          f"final return (last {a.window:.0%} of updates, per seed) | episodes in that window |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in records:
        print(f"| {r['side']} | {r['env']} | {r['steps']:,} | {r['seeds']} | {r.get('devices', 1)} | {r['compile_s']:.1f} | "
              f"{r['run_s']:.1f} | {r['steps'] * r['seeds'] / r['run_s']:,.0f} | "
              f"{', '.join(f'{x:.1f}' for x in r['final_return'])} | {', '.join(map(str, r['episodes_in_window']))} |")
    if a.json:
        old = json.load(open(a.json)) if os.path.exists(a.json) else []
        with open(a.json, "w") as f:
            json.dump(old + records, f, indent=1)


if __name__ == "__main__":
    main()
