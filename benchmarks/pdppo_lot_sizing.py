"""PDPPO vs PPO on lot sizing (the paper's four instances) and on the post-decision FrozenLake.

One invocation trains one (env, method) pair for `--seeds` vmapped seeds in one compiled
program and writes a JSON with the learning curve and final numbers:

    python benchmarks/pdppo_lot_sizing.py --env 15x5 --method pdppo --steps 1000000 --seeds 20
    python benchmarks/pdppo_lot_sizing.py --env 15x5 --method ppo_recipe --steps 1000000 --seeds 20
    python benchmarks/pdppo_lot_sizing.py --env 15x5 --method ppo --steps 1000000 --seeds 20
    python benchmarks/pdppo_lot_sizing.py --env lake --method pdppo --seeds 8
    python benchmarks/pdppo_lot_sizing.py --report      # table + curves from the JSONs written so far

Methods:
    pdppo       algorithms/pdppo.py, defaults (dual critics, max advantage)
    ppo_recipe  algorithms/pdppo.py --advantage state: the reference's PPO baseline (one critic
                V(s), same buffer, epochs, learning rates, entropy and discount as PDPPO)
    ppo         algorithms/ppo.py (rlx PPO-Clip) set as close to the reference baseline as its
                flags allow: 4 envs x 100 steps, 40 full-batch epochs, lr 5.5e-4 (one Adam for
                actor and critic), gamma 0.9, lambda 1, vf 0.7, ent 0.001, 128-128 ReLU, no lr
                annealing, no value clipping, no gradient clipping. It still normalises advantages
                and does not reuse old rollouts (no buffer), unlike the reference.
Lot-sizing envs use the paper's exact instance files from ../shared/data/lot_sizing/ (relative to
the repo root; `--data` to change); without them the generated `lot-sizing/<IxM>` instance is used
and the JSON says so.

Statistic: like the reference's logs, a log point every 4000 env steps = the mean return of the
40 episodes that finished in that window (lot sizing: every update finishes 4 episodes). "final"
is the last log point per seed; "max" is the best log point per seed (the paper's table
statistic). Mean over seeds with a 95% percentile-bootstrap CI.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import jax
import numpy as np

import rlx.config
import rlx.envs as envs
from rlx.algorithms import pdppo
from rlx.stats import bootstrap_ci, iqm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "..", "shared", "data", "lot_sizing")


def build(env_name: str, method: str, steps: int, data: str):
    notes = []
    if env_name == "lake":
        env_id, path = "frozen-lake-pd", ""
    else:
        path = os.path.join(data, f"{env_name}.json")
        env_id = f"lot-sizing/{env_name}"
        if not os.path.exists(path):
            notes.append(f"{path} not found: generated instance lot-sizing/{env_name} (seed 0) used instead")
            path = ""
    if method in ("pdppo", "ppo_recipe", "pdppo_min", "pdppo_post"):
        kw = dict(pdppo.preset(env_id))
        kw.update(env=env_id, instance_path=path, total_timesteps=steps)
        kw["advantage"] = {"pdppo": "max", "ppo_recipe": "state", "pdppo_min": "min", "pdppo_post": "post"}[method]
        cfg = pdppo.Config(**kw)
        rlx.config.validate(cfg)
        return pdppo.make_train(cfg), cfg, notes
    if method == "ppo":
        from rlx.algorithms import ppo

        if path:  # ppo.py makes envs by name only: register the instance file under a name
            env_id = f"lot-sizing/paper-{env_name}"
            envs.register(env_id, lambda p=path: envs.make("lot-sizing/file", path=p))
        if env_name == "lake":
            kw = dict(num_envs=6, num_steps=100, gamma=0.991, clip_eps=0.21, lr=4e-4, ent_coef=0.012,
                      max_grad_norm=1.0, activation="tanh")
        else:
            kw = dict(num_envs=4, num_steps=100, gamma=0.9, clip_eps=0.2, lr=5.5e-4, ent_coef=0.001,
                      max_grad_norm=1e9, activation="relu")
        cfg = ppo.Config(env=env_id, total_timesteps=steps, update_epochs=40, num_minibatches=1, anneal_lr=False,
                         gae_lambda=1.0, vf_coef=0.7, clip_value=False, hidden=(128, 128), **kw)
        rlx.config.validate(cfg)
        return ppo.make_train(cfg), cfg, notes
    raise SystemExit(f"unknown method {method!r}")


def report(out: str):
    """Markdown table of every JSON in `out` and one PNG of mean curves per env."""
    import glob

    rows = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "*.json")))]
    print("| env | method | steps | seeds | final (mean, 95% CI) | final per seed | max of curve (mean) | compile s | run s | env steps/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ci = r["final_ci95"]
        print(f"| {r['env']} | {r['method']} | {r['steps']} | {r['seeds']} | {r['final_mean']:.1f} [{ci[0]:.1f}, {ci[1]:.1f}] | "
              f"{', '.join(f'{x:.0f}' for x in r['final_per_seed'])} | {r['max_mean']:.1f} | {r['compile_s']:.0f} | "
              f"{r['run_s']:.0f} | {r['env_steps_per_s']:.0f} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    for env in sorted({r["env"] for r in rows}):
        fig, ax = plt.subplots(figsize=(6, 4))
        for r in rows:
            if r["env"] != env:
                continue
            c = np.asarray(r["curve"])
            x = (np.arange(c.shape[1]) + 1) * r["log_steps"]
            ax.plot(x, c.mean(0), label=f"{r['method']} ({r['seeds']} seeds)")
            ax.fill_between(x, c.min(0), c.max(0), alpha=0.2)
        ax.set_xlabel("env steps")
        ax.set_ylabel(f"mean return, episodes of the last {rows[0]['log_steps']} steps")
        ax.set_title(f"{env}: mean over seeds (band: min-max)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(os.path.join(ROOT, "benchmarks", "results", f"pdppo_{env}.png"), dpi=80)  # next to pdppo.md
        plt.close(fig)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="15x5", help="15x5 | 20x10 | 25x10 | 25x15 | lake")
    ap.add_argument("--method", default="pdppo", help="pdppo | ppo_recipe | ppo | pdppo_min | pdppo_post")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log-steps", type=int, default=4000, help="env steps per log point")
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "raw", "pdppo_runs"))
    ap.add_argument("--report", action="store_true", help="print the table of all results in --out and plot curves")
    args = ap.parse_args()
    if args.report:
        return report(args.out)

    load = os.getloadavg()
    train, cfg, notes = build(args.env, args.method, args.steps, args.data)
    keys = jax.random.split(jax.random.PRNGKey(args.seed), args.seeds)
    fn = jax.jit(jax.vmap(train.train))
    t0 = time.time()
    compiled = fn.lower(keys).compile()
    t_compile = time.time() - t0
    t0 = time.time()
    _, metrics = compiled(keys)
    jax.block_until_ready(metrics)
    t_run = time.time() - t0

    spu = train.env_steps_per_update
    per_log = max(1, args.log_steps // spu)
    n_log = train.num_updates // per_log
    rs = np.asarray(metrics["episode_return_sum"])[:, : n_log * per_log].reshape(args.seeds, n_log, per_log).sum(-1)
    cnt = np.asarray(metrics["episode_count"])[:, : n_log * per_log].reshape(args.seeds, n_log, per_log).sum(-1)
    curve = rs / np.maximum(cnt, 1)  # [seeds, log points]
    final, best = curve[:, -1], curve.max(1)
    res = {
        "env": args.env, "method": args.method, "steps": args.steps, "seeds": args.seeds, "base_seed": args.seed,
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()},
        "notes": notes, "compile_s": t_compile, "run_s": t_run,
        "env_steps_per_s": args.seeds * train.num_updates * spu / t_run,
        "final_per_seed": final.tolist(), "final_mean": float(final.mean()), "final_iqm": iqm(final),
        "final_ci95": bootstrap_ci(final), "max_per_seed": best.tolist(), "max_mean": float(best.mean()),
        "max_ci95": bootstrap_ci(best), "log_steps": per_log * spu,
        "curve_mean": curve.mean(0).tolist(), "curve": curve.tolist(),
        "machine": {"cpu": subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip(),
                    "cores": os.cpu_count(), "loadavg_before": load, "loadavg_after": os.getloadavg(),
                    "platform": platform.platform()},
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
    }
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"{args.env}_{args.method}_{args.steps}_{args.seeds}s.json")
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    print(f"{args.env} {args.method}: final {res['final_mean']:.1f} CI {res['final_ci95']} max {res['max_mean']:.1f} "
          f"compile {t_compile:.1f}s run {t_run:.1f}s -> {path}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
