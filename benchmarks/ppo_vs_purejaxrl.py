"""PPO speed and return: rlx vs PureJaxRL on the same work (CartPole-v1, 4 envs x 128 steps,
5e5 steps, PureJaxRL's hyperparameters), 1 and 64 seeds vmapped, in one sitting.

PureJaxRL runs from a copy outside the repo with its own venv (jax 0.9.2, gymnax 0.0.8: it
needs the old gymnax step API); see benchmarks/reference/README.md. Both sides are timed the same way:
`jax.jit(jax.vmap(train)).lower(keys).compile()` (compile_s), then the compiled call until
`block_until_ready` (run_s). rlx is timed three ways: the bare program on one device (the
like-for-like per-core comparison), the bare program with the seed axis sharded over the CPU
devices rlx asks for (one per core, rlx.devices.use_all_cpu_cores), and through its runner (`rlx.run.run`,
what the command line uses: chunks, metrics, final evaluation, seeds sharded). PureJaxRL runs as
published: one program on one device.

    python benchmarks/ppo_vs_purejaxrl.py --ref $RLX_REF --seeds 1 64 --repeats 2 \
        --out benchmarks/results/raw/ppo_cartpole-<date>.md

`--ref` is the reference environment built by benchmarks/reference/setup.sh (see its README; default
$RLX_REF, else /tmp/ref). `--out` overwrites its file with this sitting's table and records: write it
under benchmarks/results/raw/ and copy the table into the curated benchmarks/results/ppo_cartpole.md;
`--rlx-python` may name another interpreter for the rlx side (e.g. a venv on the reference's
jax version).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

RLX_CHILD = r"""
import json, sys
import jax, numpy as np
import rlx.devices; rlx.devices.use_all_cpu_cores()  # one CPU device per core, as the rlx command line does
sys.path[:0] = [%(algos)r, %(here)r]
import ppo
from timing import compile_and_run
from rlx import run as R
n, mode = int(sys.argv[1]), sys.argv[2]
cfg = ppo.Config(env="CartPole-v1", total_timesteps=500_000)
if mode in ("direct", "sharded"):
    t = ppo.make_train(cfg)
    keys = jax.random.split(jax.random.PRNGKey(0), n)
    devices = 1
    if mode == "sharded":  # the seed axis split over the CPU devices rlx asks for (one per core)
        keys, devices = R.shard_runs(keys)
    (state, m), times = compile_and_run(jax.vmap(t.train), keys)
    m = jax.device_get(m)
    w0 = int(np.floor(0.95 * t.num_updates))
    ret = (m["episode_return_sum"][:, w0:].sum(1) / np.maximum(m["episode_count"][:, w0:].sum(1), 1)).tolist()
    out = dict(times, final_return_last5pct=ret)
else:
    res = R.run(ppo.Config, ppo.make_train, cfg, name="ppo", num_seeds=n, progress=False)
    s = res.summary
    out = dict(compile_s=s["compile_s"], run_s=s["wall_s"], final_return_last5pct=s["train_return_last5pct"],
               final_eval=s["final_return"])
out["jax"] = jax.__version__
out["devices"] = s["devices"] if mode == "runner" else devices
print(json.dumps(out))
"""


MODES = {"direct": "jit(vmap(train)), 1 device", "sharded": "jit(vmap(train)), seeds sharded",
         "runner": "runner (CLI path)"}


def run_json(cmd, env=None):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr[-3000:]}")
    return json.loads([l for l in p.stdout.splitlines() if l.startswith("{")][-1])


def iqm(x):
    v = np.sort(np.asarray(x, float))
    k = int(0.25 * v.size)
    return float(v[k:v.size - k].mean())


def ci95(x, n_boot=2000):
    v = np.asarray(x, float)
    if v.size < 2:
        return [float(v.mean())] * 2
    rng = np.random.default_rng(0)
    b = v[rng.integers(0, v.size, (n_boot, v.size))].mean(1)
    return [float(np.quantile(b, 0.025)), float(np.quantile(b, 0.975))]


def load():
    return open("/proc/loadavg").read().split()[:3]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default=os.environ.get("RLX_REF", "/tmp/ref"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--rlx-python", nargs="+", default=[sys.executable], help="one or more interpreters for the rlx side")
    ap.add_argument("--modes", nargs="+", default=["direct", "sharded", "runner"], choices=list(MODES))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    child = RLX_CHILD % {"algos": os.path.join(ROOT, "algorithms"), "here": HERE}
    results = []
    load_before = load()
    t_start = time.time()
    for n in args.seeds:
        for rep in range(args.repeats):  # interleave reference and rlx to share any drift in load
            ref = run_json([os.path.join(HERE, "reference", "run.sh"), os.path.join(args.ref, "purejaxrl", "ppo.py"),
                            "--yaml", os.path.join(HERE, "reference", "configs", "ppo_cartpole.yaml"),
                            "--num-seeds", str(n)], env=dict(os.environ, RLX_REF=args.ref))
            results.append(dict(impl="PureJaxRL ppo.py", mode="jit(vmap(train))", seeds=n, rep=rep, **ref))
            print(json.dumps(results[-1]), flush=True)
            for py in args.rlx_python:
                for mode in args.modes:
                    r = run_json([py, "-c", child, str(n), mode])
                    results.append(dict(impl="rlx ppo.py", mode=MODES[mode], seeds=n, rep=rep, **r))
                    print(json.dumps(results[-1]), flush=True)
    load_after = load()

    lines = ["| seeds | implementation | timing | CPU devices | jax | compile s | run s (compile excluded) | env steps/s | "
             "final return (last 5% of training, mean / IQM / 95% CI) | rlx ÷ ref run time |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for n in args.seeds:
        ref_runs = [r for r in results if r["seeds"] == n and r["impl"].startswith("PureJaxRL")]
        ref_t = min(r["run_s"] for r in ref_runs)
        groups = {}
        for r in results:
            if r["seeds"] == n:
                groups.setdefault((r["impl"], r["mode"], r.get("jax")), []).append(r)
        for (impl, mode, _), rs in groups.items():
            run_s = min(r["run_s"] for r in rs)
            comp = min(r["compile_s"] for r in rs)
            rets = rs[0]["final_return_last5pct"]
            ratio = "" if impl.startswith("PureJaxRL") else f"{run_s / ref_t:.2f}"
            lines.append(f"| {n} | {impl} | {mode} | {rs[0].get('devices', 1)} | {rs[0].get('jax', '?')} | {comp:.1f} | {run_s:.2f} | "
                         f"{n * 499712 / run_s:,.0f} | {np.mean(rets):.1f} / {iqm(rets):.1f} / "
                         f"[{ci95(rets)[0]:.1f}, {ci95(rets)[1]:.1f}] | {ratio} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("<!-- written by benchmarks/ppo_vs_purejaxrl.py -->\n")
            f.write(f"Command: `python benchmarks/ppo_vs_purejaxrl.py {' '.join(sys.argv[1:])}`\n\n")
            f.write(f"Load average before / after: {' '.join(load_before)} / {' '.join(load_after)}; "
                    f"total {time.time() - t_start:.0f} s. Times are the minimum over {args.repeats} repeat(s).\n\n")
            f.write(table + "\n\n```json\n" + json.dumps(results, indent=1) + "\n```\n")


if __name__ == "__main__":
    main()
