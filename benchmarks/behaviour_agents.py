"""Behaviour policies for rlx's D4RL-style brax datasets: export a PPO run into a policy file.

1. Train (resumable; keep a copy of each checkpoint as it is written, for medium-replay):

       python algorithms/ppo.py --env brax/hopper --num-seeds 1 --total-timesteps 2e7 \\
           --checkpoint-every 100000 --log-every 100000 --out runs/behaviour/hopper
       # beside it: cp runs/behaviour/hopper/checkpoint.npz runs/behaviour/hopper.snapshots/ckpt_<mtime>.npz
       # after every write (benchmarks/behaviour_agents.py snapshot DIR does this loop); checkpoints are
       # written at chunk ends and chunks follow --log-every, hence both flags

2. Export: every snapshot's policy (actor MLP, Gaussian log-std, observation statistics) is
   evaluated (sampled actions); the best one is `expert`, the earlier snapshot whose return is
   closest to a third of the expert's is `medium`, and every snapshot up to it is a `replay_*` policy. The
   reference returns (uniform random policy and expert, 100 episodes each) go into the header.

       python benchmarks/behaviour_agents.py export --run runs/behaviour/hopper \\
           --snapshots runs/behaviour/hopper.snapshots --out rlx/datasets/policies/hopper.npz

The policy file is what the repository keeps (a few MB); the datasets are regenerated from it by
`python -m rlx.datasets generate`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "algorithms"))

import ppo  # noqa: E402

import rlx.envs as envs  # noqa: E402
from rlx import rundir  # noqa: E402
from rlx.config import check  # noqa: E402
from rlx.datasets import generate as G  # noqa: E402


def ppo_config(run_dir: str) -> ppo.Config:
    with open(os.path.join(run_dir, "config.json")) as f:
        saved = json.load(f)["config"]
    names = {f for f in ppo.Config.__dataclass_fields__}
    return ppo.Config(**{k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in names})


def policy_from_checkpoint(path: str, template) -> G.Policy:
    """The actor of run 0 in a runner checkpoint of a 1-seed run (`template`: one run's state shape)."""
    leaves, _ = rundir.read_checkpoint(path)
    state = rundir.restore(path, [x[0] for x in leaves], template)
    p = state.params["params"]
    mlp, head = p["MLP_0"], p["GaussianHead_0"]
    n = len(mlp)
    kernels = tuple(np.asarray(mlp[f"Dense_{i}"]["kernel"]) for i in range(n)) + (np.asarray(head["Dense_0"]["kernel"]),)
    biases = tuple(np.asarray(mlp[f"Dense_{i}"]["bias"]) for i in range(n)) + (np.asarray(head["Dense_0"]["bias"]),)
    stats = state.obs_stats
    return G.Policy(kernels, biases, np.asarray(head["log_std"]), np.asarray(stats.mean), np.asarray(stats.var))


def export(args) -> None:
    cfg = ppo_config(args.run)
    check_env = cfg.env
    backend = cfg.env_backend if cfg.env_backend != "auto" else "spring"
    template = jax.eval_shape(ppo.make_train(cfg).init, jax.random.PRNGKey(0))
    snaps = sorted((f for f in os.listdir(args.snapshots) if f.endswith(".npz")), key=lambda f: int(f.split("_")[1][:-4]))
    snaps = [os.path.join(args.snapshots, f) for f in snaps]
    final = os.path.join(args.run, "checkpoint.npz")
    env = envs.make(check_env, backend=backend, autoreset="fresh")
    key = jax.random.PRNGKey(args.seed)
    rets = []
    for i, path in enumerate(snaps + [final]):
        pol = policy_from_checkpoint(path, template)
        t0 = time.perf_counter()
        r = G.mean_return(env, pol, cfg.activation, jax.random.fold_in(key, i), args.episodes)
        rets.append((path, pol, r))
        print(f"{os.path.basename(path)}: return {r:.1f} ({time.perf_counter() - t0:.1f} s)", flush=True)
    # expert: the best snapshot (the top three re-evaluated on 100 episodes); medium: the snapshot before it
    # whose return is closest to a third of the expert's; replay: every snapshot up to medium
    top = sorted(range(len(rets)), key=lambda i: rets[i][2])[-3:]
    full = {i: G.mean_return(env, rets[i][1], cfg.activation, jax.random.fold_in(key, 10_000 + i), 100) for i in top}
    e = max(full, key=full.get)
    ref_max = full[e]
    ref_min = G.mean_return(env, None, cfg.activation, jax.random.fold_in(key, 20_000), 100)
    check(e > 0, "the best snapshot is the first one: no earlier policy can be medium; snapshot earlier in training")
    m = min(range(e), key=lambda i: abs(rets[i][2] - ref_max / 3))
    policies = {"expert": rets[e][1], "medium": rets[m][1]}
    info = {"expert": {"checkpoint": os.path.basename(rets[e][0]), "return": ref_max},
            "medium": {"checkpoint": os.path.basename(rets[m][0]), "return": rets[m][2]}}
    for j in range(m + 1):
        policies[f"replay_{j:03d}"] = rets[j][1]
        info[f"replay_{j:03d}"] = {"checkpoint": os.path.basename(rets[j][0]), "return": rets[j][2]}
    header = {"env": check_env, "backend": backend, "activation": cfg.activation, "hidden": list(cfg.hidden),
              "policies": info, "ref_min_return": ref_min, "ref_max_return": ref_max,
              "command": f"python algorithms/ppo.py --env {check_env} --num-seeds 1 --total-timesteps {cfg.total_timesteps} "
                         "--checkpoint-every 100000 --log-every 100000 (PPO's brax preset)",
              "algorithm": "ppo", "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}}
    G.save_policies(args.out, policies, header)
    print(json.dumps({"out": args.out, "ref_min_return": ref_min, "ref_max_return": ref_max, "medium": info["medium"],
                      "replay_policies": m + 1, "bytes": os.path.getsize(args.out)}, indent=1))


def snapshot(args) -> None:
    """Copy DIR/checkpoint.npz to DIR.snapshots/ckpt_<mtime>.npz whenever it changes (until killed)."""
    src, dst = os.path.join(args.run, "checkpoint.npz"), args.run.rstrip("/") + ".snapshots"
    os.makedirs(dst, exist_ok=True)
    while True:
        if os.path.exists(src):
            target = os.path.join(dst, f"ckpt_{int(os.stat(src).st_mtime)}.npz")
            if not os.path.exists(target):
                shutil.copyfile(src, target)
        time.sleep(args.every)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--run", required=True)
    e.add_argument("--snapshots", required=True)
    e.add_argument("--out", required=True)
    e.add_argument("--episodes", type=int, default=20, help="evaluation episodes per snapshot")
    e.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("snapshot")
    s.add_argument("run")
    s.add_argument("--every", type=float, default=20.0)
    a = p.parse_args()
    export(a) if a.cmd == "export" else snapshot(a)


if __name__ == "__main__":
    main()
