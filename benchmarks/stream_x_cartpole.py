"""Stream Q(λ) on CartPole-v1: learning curves of groups of 4 vmapped learners, for the truncation
rule comparison in benchmarks/results/stream_x.md.

    python benchmarks/stream_x_cartpole.py --steps 60000 --window 5000 --key-sets 0 1 2 3 4 5 \\
        --bootstrap-truncation true false

For each rule and key set (learners = jax.random.split(PRNGKey(key_set), 4)) prints the mean over
the 4 learners of the training return of episodes that ended in each window of env steps.
"""
from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np

from rlx.algorithms import stream_q


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60_000)
    p.add_argument("--window", type=int, default=5_000)
    p.add_argument("--learners", type=int, default=4)
    p.add_argument("--key-sets", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    p.add_argument("--bootstrap-truncation", nargs="+", default=["true", "false"])
    a = p.parse_args()
    for rule in a.bootstrap_truncation:
        cfg = stream_q.Config(env="CartPole-v1", total_timesteps=a.steps, bootstrap_truncation=rule.lower() == "true")
        train = stream_q.make_train(cfg)
        t0 = time.perf_counter()
        run = jax.jit(jax.vmap(train.train)).lower(jax.random.split(jax.random.PRNGKey(0), a.learners)).compile()
        compile_s = time.perf_counter() - t0
        for ks in a.key_sets:
            t0 = time.perf_counter()
            _, m = run(jax.random.split(jax.random.PRNGKey(ks), a.learners))
            ret, cnt = np.asarray(m["episode_return_sum"]), np.asarray(m["episode_count"])
            run_s = time.perf_counter() - t0
            nw = a.steps // a.window
            ret = ret[:, : nw * a.window].reshape(a.learners, nw, a.window).sum(-1)
            cnt = cnt[:, : nw * a.window].reshape(a.learners, nw, a.window).sum(-1)
            per_learner = ret / np.maximum(cnt, 1)
            print(json.dumps({"bootstrap_truncation": cfg.bootstrap_truncation, "key_set": ks, "compile_s": round(compile_s, 1),
                              "run_s": round(run_s, 1), "window_mean_return": np.round(per_learner.mean(0), 1).tolist(),
                              "max_window_mean": float(per_learner.mean(0).max()),
                              "last_window_per_learner": np.round(per_learner[:, -1], 1).tolist()}), flush=True)


if __name__ == "__main__":
    main()
