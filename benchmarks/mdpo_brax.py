"""MDPO on brax: on-policy MDPO vs rlx PPO and off-policy MDPO vs rlx SAC at a fixed env-step budget.

Every (env, algorithm) pair is one `rlx.run.run` call (all seeds vmapped in one compiled program).
Prints and saves per pair: compile s, run s, env steps/s, final return (mean, IQM, 95% bootstrap CIs
over seeds); writes `<out>/summary.json` and one curve PNG per env (training return, mean and 95% CI).

Full budget (the paper's 1M steps; needs an accelerator or a lot of CPU time):
    python benchmarks/mdpo_brax.py --envs hopper,halfcheetah,walker2d,ant --num-seeds 5 \
        --onpolicy-steps 1000000 --offpolicy-steps 1000000 --out benchmarks/results/raw/mdpo_brax

Algorithms (same env, steps and seeds within a pair):
- mdpo:     algorithms/mdpo.py defaults = the reference MuJoCo setting (1 env x 2048 steps, m = 10);
- ppo:      algorithms/ppo.py in the classic MuJoCo PPO setting with the same rollout (1 env x 2048 steps,
            10 epochs x 32 minibatches, Adam 3e-4 annealed, 2x64 tanh, obs + reward normalisation, no entropy);
- mdpo_off: algorithms/mdpo_offpolicy.py defaults (c = 1, lam = 0.2, m = 1000);
- sac:      algorithms/mdpo_offpolicy.py --sac (c = lam), otherwise identical.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "algorithms"))

import mdpo  # noqa: E402
import mdpo_offpolicy  # noqa: E402
import ppo  # noqa: E402

import rlx.devices  # noqa: E402
from rlx import run as R  # noqa: E402
from rlx.stats import bootstrap_ci, iqm  # noqa: E402


def algo_config(algo: str, env: str, args):
    if algo == "mdpo":
        return mdpo, mdpo.Config, mdpo.Config(env=env, total_timesteps=args.onpolicy_steps)
    if algo == "ppo":
        cfg = ppo.Config(env=env, total_timesteps=args.onpolicy_steps, num_envs=1, num_steps=2048, update_epochs=10,
                         num_minibatches=32, lr=3e-4, anneal_lr=True, ent_coef=0.0, hidden=(64, 64), activation="tanh",
                         normalize_obs=True, normalize_reward=True)
        return ppo, ppo.Config, cfg
    if algo in ("mdpo_off", "sac"):
        cfg = mdpo_offpolicy.Config(env=env, total_timesteps=args.offpolicy_steps, sac=(algo == "sac"),
                                    learning_starts=min(args.learning_starts, args.offpolicy_steps // 2),
                                    steps_per_update=args.off_steps_per_update, hidden=tuple(args.off_hidden))
        return mdpo_offpolicy, mdpo_offpolicy.Config, cfg
    raise ValueError(algo)


def curve(rows, num_runs):
    steps = sorted({r["env_steps"] for r in rows})
    by = {(r["env_steps"], r["run"]): r["episode_return"] for r in rows}
    mean, lo, hi = [], [], []
    for s in steps:
        v = np.asarray([by.get((s, i), np.nan) for i in range(num_runs)], np.float64)
        v = v[np.isfinite(v)]
        if v.size == 0:
            mean.append(np.nan), lo.append(np.nan), hi.append(np.nan)
            continue
        ci = bootstrap_ci(v, np.mean)
        mean.append(v.mean()), lo.append(ci[0]), hi.append(ci[1])
    return np.asarray(steps), np.asarray(mean), np.asarray(lo), np.asarray(hi)


def main():
    rlx.devices.use_all_cpu_cores()  # one CPU device per core, as the rlx command line does
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", default="hopper,halfcheetah,walker2d,ant")
    p.add_argument("--algos", default="mdpo,ppo,mdpo_off,sac")
    p.add_argument("--num-seeds", type=int, default=5)
    p.add_argument("--onpolicy-steps", type=int, default=1_000_000)
    p.add_argument("--offpolicy-steps", type=int, default=1_000_000)
    p.add_argument("--learning-starts", type=int, default=10_000)
    p.add_argument("--off-steps-per-update", type=int, default=1000)
    p.add_argument("--off-hidden", type=int, nargs="+", default=[256, 256])
    p.add_argument("--eval-episodes", type=int, default=0, help="0: final return = training episodes of the last 5%%")
    p.add_argument("--out", default=os.path.join(ROOT, "benchmarks", "results", "raw", "mdpo_brax"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "summary.json")
    results = json.load(open(path)) if os.path.exists(path) else {}

    for env_name in args.envs.split(","):
        env = f"brax/{env_name}"
        for algo in args.algos.split(","):
            mod, cls, cfg = algo_config(algo, env, args)
            t0 = time.time()
            res = R.run(cls, mod.make_train, cfg, name=algo, num_seeds=args.num_seeds, progress=False,
                        eval_episodes=args.eval_episodes, out=os.path.join(args.out, f"{algo}_{env_name}"))
            s = res.summary
            fin = np.asarray([np.nan if x is None else x for x in s["final_return"]], np.float64)
            fin = fin[np.isfinite(fin)]
            entry = {
                "algo": algo, "env": env, "seeds": args.num_seeds, "env_steps": s["env_steps"],
                "compile_s": s["compile_s"], "train_s": s["train_s"], "wall_s": time.time() - t0,
                "steps_per_s": s["env_steps"] * args.num_seeds / max(s["train_s"], 1e-9),
                "final_return": s["final_return"], "final_mean": float(fin.mean()) if fin.size else None,
                "final_iqm": iqm(fin) if fin.size else None,
                "mean_ci95": bootstrap_ci(fin, np.mean) if fin.size else None,
                "iqm_ci95": bootstrap_ci(fin, iqm) if fin.size else None,
                "final_return_source": s["final_return_source"],
                "curve": [list(map(float, x)) for x in curve(res.metrics, len(res.runs))],
            }
            results[f"{algo}/{env_name}"] = entry
            print(json.dumps({k: v for k, v in entry.items() if k != "curve"}), flush=True)
            with open(path, "w") as f:
                json.dump(results, f, indent=1)
        plot(results, env_name, args.out)


def plot(results, env_name, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, algos, title in ((axes[0], ("mdpo", "ppo"), "on-policy"), (axes[1], ("mdpo_off", "sac"), "off-policy")):
        for algo in algos:
            e = results.get(f"{algo}/{env_name}")
            if not e:
                continue
            x, m, lo, hi = (np.asarray(v) for v in e["curve"])
            ax.plot(x, m, label=f"{algo} ({e['seeds']} seeds)")
            ax.fill_between(x, lo, hi, alpha=0.25)
        ax.set_title(f"brax/{env_name} {title}")
        ax.set_xlabel("env steps")
        ax.set_ylabel("training episode return")
        ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"curve_{env_name}.png"), dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    main()
