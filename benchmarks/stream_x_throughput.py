"""Stream-x throughput: rlx (vmapped learners in one jitted program) vs the official PyTorch
implementation (mohmdelsayed/streaming-drl, one learner per Python process).

Same work on both sides: Stream Q(λ) on CartPole-v1 with the reference network (2×32, sparse
init, parameter-free LayerNorm, LeakyReLU), ObGD, observation/reward normalisation and time
feature, one env step + one update per learner step; or Stream AC(λ) on Pendulum-v1 (actor and
critic 2×128). The reference's own training loop is timed end to end (gymnasium env included).
rlx: compile and run are timed separately; steps/s = learners × steps / run seconds.

    # rlx: 1, 16 and 256 learners
    python benchmarks/stream_x_throughput.py rlx --algo q --learners 1 16 256 --steps 20000
    # reference (copy streaming-drl's optim.py, stream_q.py, normalization_wrappers.py,
    # time_wrapper.py, sparse_init.py, stream_ac_continuous.py into REF_DIR; CPU torch):
    OMP_NUM_THREADS=1 /tmp/streamref/venv/bin/python benchmarks/stream_x_throughput.py ref \\
        --algo q --steps 20000 --ref-dir /tmp/streamref/ref

Prints one JSON line per configuration.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time


def bench_rlx(algo: str, learners: list, steps: int, seed: int = 0):
    import jax
    import numpy as np

    if algo == "q":
        from rlx.algorithms import stream_q as mod

        cfg = mod.Config(env="CartPole-v1", total_timesteps=steps)
    else:
        from rlx.algorithms import stream_ac as mod

        cfg = mod.Config(**{**mod.preset("Pendulum-v1"), "env": "Pendulum-v1", "total_timesteps": steps})
    import rlx.config
    rlx.config.validate(cfg)  # declared ranges, then the cross-field checks
    train = mod.make_train(cfg)
    for n in learners:
        keys = jax.random.split(jax.random.PRNGKey(seed), n)
        t0 = time.perf_counter()
        compiled = jax.jit(jax.vmap(train.train)).lower(keys).compile()
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, m = compiled(keys)
        jax.block_until_ready(m)
        run_s = time.perf_counter() - t0
        ret, cnt = np.asarray(m["episode_return_sum"]), np.asarray(m["episode_count"])
        last = slice(int(0.9 * steps), steps)
        print(json.dumps({
            "impl": "rlx", "algo": algo, "learners": n, "steps_per_learner": steps, "compile_s": round(compile_s, 2),
            "run_s": round(run_s, 3), "steps_per_s_total": round(n * steps / run_s, 1),
            "steps_per_s_per_learner": round(steps / run_s, 1),
            "return_last10pct_mean": float(ret[:, last].sum() / max(cnt[:, last].sum(), 1)),
            "device": str(jax.devices()[0]), "jax": jax.__version__}), flush=True)


def bench_ref(algo: str, steps: int, ref_dir: str, seed: int = 0):
    """Time the official main() for `steps` steps (it also writes a pickle of returns into the
    current directory: run from a scratch folder)."""
    import numpy as np
    import torch

    sys.path.insert(0, ref_dir)
    if algo == "q":
        import stream_q as ref

        args = dict(env_name="CartPole-v1", seed=seed, lr=1.0, gamma=0.99, lamda=0.8, total_steps=steps,
                    epsilon_target=0.01, epsilon_start=1.0, exploration_fraction=0.05, kappa_value=2.0,
                    debug=False, overshooting_info=False)
    else:
        import stream_ac_continuous as ref

        args = dict(env_name="Pendulum-v1", seed=seed, lr=1.0, gamma=0.99, lamda=0.8, total_steps=steps,
                    entropy_coeff=0.01, kappa_policy=3.0, kappa_value=2.0, debug=False, overshooting_info=False)
    t0 = time.perf_counter()
    ref.main(**args)
    run_s = time.perf_counter() - t0
    print(json.dumps({"impl": "streaming-drl", "algo": algo, "learners": 1, "steps_per_learner": steps,
                      "run_s": round(run_s, 3), "steps_per_s_total": round(steps / run_s, 1),
                      "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                      "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("which", choices=["rlx", "ref"])
    p.add_argument("--algo", choices=["q", "ac"], default="q")
    p.add_argument("--learners", type=int, nargs="+", default=[1, 16, 256])
    p.add_argument("--steps", type=int, default=20_000)
    p.add_argument("--ref-dir", default="/tmp/streamref/ref")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    if a.which == "rlx":
        bench_rlx(a.algo, a.learners, a.steps, a.seed)
    else:
        bench_ref(a.algo, a.steps, a.ref_dir, a.seed)


if __name__ == "__main__":
    main()
