"""PQN: rlx (algorithms/pqn.py) against purejaxql (mttga/purejaxql pqn_gymnax.py / pqn_minatar.py),
same configs, one process at a time, in one sitting.

    python benchmarks/pqn_vs_purejaxql.py --cases cartpole1,breakout,cartpole16 \
        --json benchmarks/results/raw/pqn_raw.json

The reference runs from a copy outside the repo (`$RLX_REF`, default /tmp/ref, built as
benchmarks/reference/README.md says) through benchmarks/reference/run.sh (jax 0.9.2, gymnax 0.0.8,
stubs for hydra/wandb); rlx runs in this interpreter's environment. Both
sides: `jax.jit(jax.vmap(train))` over `split(PRNGKey(0), seeds)`, compile timed apart from the run
(`block_until_ready`); wall and process-CPU seconds are recorded. With several seeds rlx runs twice:
on one device (the per-core comparison) and with the seed axis sharded over the CPU devices rlx asks
for, one per core (`rlx-sharded`, what its runner does); purejaxql runs as published, on one device.

Like for like: rlx runs with `bootstrap_truncation=False` (purejaxql treats time limits as
terminations) and the ε/lr schedules over the same number of steps. purejaxql's in-jit greedy test
runs only at the start and at the end (TEST_INTERVAL=1.0: 128 envs for max_steps_in_episode
steps); rlx evaluates once at the end (128 greedy episodes, timed separately as eval_s). Returns:
- greedy: purejaxql `test/returned_episode_returns` (mean over episodes finished within the test
  window) vs rlx `evaluate` (mean first-episode return of 128 envs);
- train: return of the episodes finished in the last 5% of updates (ε-greedy policy; purejaxql's
  figure is the mean of its per-update LogWrapper means, so approximate).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

REF = os.environ.get("RLX_REF", "/tmp/ref")  # the reference environment of benchmarks/reference/setup.sh
CASES = {
    # name: (env, total_timesteps, seeds)
    "cartpole1": ("CartPole-v1", 500_000, 1),
    "cartpole16": ("CartPole-v1", 500_000, 16),
    "breakout": ("Breakout-MinAtar", 1_000_000, 1),
    # smaller budget for a loaded 2-core CPU (schedules over 1e5 steps: returns are not the 5e5 ones)
    "cartpole16_1e5": ("CartPole-v1", 100_000, 16),
}


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def ref_command(env, steps, seeds):
    if env == "CartPole-v1":
        script, alg = "purejaxql/pqn_gymnax.py", "pqn_cartpole.yaml"
    else:
        script, alg = "purejaxql/pqn_minatar.py", "pqn_minatar.yaml"
    return [os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference", "run.sh"), f"{REF}/{script}", "--yaml", f"{REF}/purejaxql/config/config.yaml",
            "--yaml", f"{REF}/purejaxql/config/alg/{alg}", "--set", f"ENV_NAME={env}",
            "--set", f"TOTAL_TIMESTEPS={steps}", "--set", f"TOTAL_TIMESTEPS_DECAY={steps}",
            "--set", "TEST_INTERVAL=1.0", "--num-seeds", str(seeds)]


def run_rlx(env, steps, seeds, sharded=False) -> dict:
    """One rlx run in this process (called in a child process by main); `sharded` splits the seed
    axis over the CPU devices rlx asks for (one per core, rlx.devices.use_all_cpu_cores), as its runner does."""
    import rlx.devices

    rlx.devices.use_all_cpu_cores()
    import jax

    from rlx.algorithms import pqn
    from timing import compile_and_run  # benchmarks/timing.py (this script's folder is on sys.path)

    cfg = pqn.Config(**{**pqn.preset(env), "env": env, "total_timesteps": steps, "bootstrap_truncation": False})
    import rlx.config
    rlx.config.validate(cfg)  # declared ranges, then the cross-field checks
    t = pqn.make_train(cfg)
    keys = jax.random.split(jax.random.PRNGKey(0), seeds)
    devices = 1
    if sharded:
        from rlx.run import shard_runs

        keys, devices = shard_runs(keys)
    (state, m), times = compile_and_run(jax.vmap(t.train), keys)
    ev = jax.jit(jax.vmap(lambda s, k: t.evaluate(s, k, t.eval_episodes)))
    ekeys = jax.random.split(jax.random.PRNGKey(1), seeds)
    ev = ev.lower(state, ekeys).compile()
    t0 = time.time()
    greedy = np.asarray(jax.block_until_ready(ev(state, ekeys)))
    eval_s = time.time() - t0
    tail = max(1, int(0.05 * t.num_updates))
    ret_sum = np.asarray(m["episode_return_sum"])[:, -tail:].sum(1)
    count = np.asarray(m["episode_count"])[:, -tail:].sum(1)
    return {**{k: round(v, 2) for k, v in times.items()}, "eval_s": round(eval_s, 2), "greedy": greedy.tolist(),
            "train": (ret_sum / np.maximum(count, 1)).tolist(), "jax": jax.__version__, "devices": devices,
            "config": {k: getattr(cfg, k) for k in cfg.__dataclass_fields__}}


def summary(values) -> dict:
    from rlx.stats import bootstrap_ci, iqm

    v = np.asarray(values, np.float64)
    return {"mean": float(v.mean()), "iqm": iqm(v), "ci95": bootstrap_ci(v)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default="cartpole1,breakout,cartpole16")
    p.add_argument("--json", default="benchmarks/results/raw/pqn_raw.json", help="append results here")
    p.add_argument("--only", choices=["both", "rlx", "ref"], default="both")
    p.add_argument("--no-sharded", action="store_true", help="skip the rlx run with seeds sharded over the CPU devices")
    p.add_argument("--_child", nargs=4, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a._child:
        env, steps, seeds, sharded = a._child
        print("RESULT " + json.dumps(run_rlx(env, int(steps), int(seeds), sharded == "1")))
        return

    results = json.load(open(a.json)) if os.path.exists(a.json) else []
    for case in a.cases.split(","):
        env, steps, seeds = CASES[case]
        sides = ["ref", "rlx"] if a.only == "both" else [a.only]
        if "rlx" in sides and seeds > 1 and not a.no_sharded:
            sides.append("rlx-sharded")  # 1 seed runs on one device either way
        for side in sides:
            load0 = loadavg()
            t0 = time.time()
            if side == "ref":
                out = subprocess.run(ref_command(env, steps, seeds), capture_output=True, text=True)
                line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
                if out.returncode != 0 or not line.startswith("{"):
                    print(out.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"reference run failed: {case}")
                r = json.loads(line)
                res = {k: r[k] for k in ("compile_s", "run_s", "compile_cpu_s", "run_cpu_s", "jax")}
                res["greedy"] = r["last[test/returned_episode_returns]"]
                res["train"] = r["final_return_last5pct"]
                res["command"] = " ".join(ref_command(env, steps, seeds))
            else:
                flag = "1" if side == "rlx-sharded" else "0"
                cmd = [sys.executable, os.path.abspath(__file__), "--_child", env, str(steps), str(seeds), flag]
                out = subprocess.run(cmd, capture_output=True, text=True)
                lines = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
                if out.returncode != 0 or not lines:
                    print(out.stderr[-3000:], file=sys.stderr)
                    raise SystemExit(f"rlx run failed: {case}")
                res = json.loads(lines[-1][7:])
                res["command"] = f"python benchmarks/pqn_vs_purejaxql.py --_child {env} {steps} {seeds} {flag}"
            res.update(case=case, side=side, env=env, steps=steps, seeds=seeds, load_before=load0,
                       load_after=loadavg(), wall_total_s=round(time.time() - t0, 1),
                       time=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                       greedy_stats=summary(res["greedy"]), train_stats=summary(res["train"]),
                       steps_per_s=round(steps * seeds / res["run_s"]))
            results.append(res)
            print(f"{case:11s} {side:11s} compile {res['compile_s']:6.1f}s run {res['run_s']:7.1f}s "
                  f"(cpu {res['run_cpu_s']:7.1f}s) greedy {res['greedy_stats']['mean']:7.2f} "
                  f"train {res['train_stats']['mean']:7.2f} load {load0} -> {res['load_after']}", flush=True)
            os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
            with open(a.json, "w") as f:
                json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
