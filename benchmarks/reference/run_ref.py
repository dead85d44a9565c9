"""Run a reference implementation's make_train(config) under jit(vmap) and time it.

Usage (see benchmarks/reference/README.md):
  benchmarks/reference/run.sh SCRIPT.py [--yaml A.yaml ...] [--set KEY=VALUE ...] [--num-seeds N] [--seed S]
                  [--out result.json] [--print-every 0]

- SCRIPT.py is imported as a module (its directory and $RLX_REF go on sys.path, so
  `from wrappers import ...` and `from purejaxql.utils import ...` work); its __main__ block
  does not run.
- The config is the merge of the --yaml files (later wins) and --set overrides (values are
  YAML-parsed: --set LR=1e-4 --set ENV_NAME=Breakout-MinAtar). For purejaxql pass its
  config/alg/<name>.yaml; keys under an `alg:` section are flattened.
- Integer-like floats (5e5) for keys TOTAL_TIMESTEPS*, NUM_*, *_STEPS*, HIDDEN_SIZE are
  converted to int.
- Timing: jax.jit(jax.vmap(train)).lower(keys).compile() is `compile_s`; running the compiled
  function to block_until_ready is `run_s` (compile excluded).
- Final return: for metrics with `returned_episode_returns`/`returned_episode` (LogWrapper),
  the mean return over the episodes that finished in the last 5% of updates, per seed; plus the
  last value of every scalar-per-update metric whose name contains "return" (e.g. purejaxql's
  test/returned_episode_returns) per seed.
"""
import argparse
import importlib.util
import json
import os
import platform
import sys
import time

import numpy as np
import yaml

INT_KEYS = ("TOTAL_TIMESTEPS", "NUM_", "HIDDEN_SIZE", "TEST_NUM", "MEMORY_WINDOW", "NUM_STEPS")


def load_config(yamls, sets):
    cfg = {}
    for y in yamls:
        with open(y) as f:
            d = yaml.safe_load(f) or {}
        alg = d.pop("alg", None)
        cfg.update(d)
        if isinstance(alg, dict):
            cfg.update(alg)
    for s in sets:
        k, v = s.split("=", 1)
        cfg[k] = yaml.safe_load(v)
    for k, v in list(cfg.items()):
        if isinstance(v, str):  # PyYAML reads 5e5 (no dot) as a string
            try:
                v = float(v)
                cfg[k] = v
            except ValueError:
                pass
        if isinstance(v, float) and v.is_integer() and any(t in k for t in INT_KEYS):
            cfg[k] = int(v)
    return cfg


def final_returns(metrics, num_seeds):
    out = {}
    if isinstance(metrics, dict) and "returned_episode_returns" in metrics and "returned_episode" in metrics:
        r = np.asarray(metrics["returned_episode_returns"]).reshape(num_seeds, -1)
        done = np.asarray(metrics["returned_episode"]).reshape(num_seeds, -1)
        if r.shape == done.shape:
            n_upd = np.asarray(metrics["returned_episode"]).shape[1]
            per_upd = r.shape[1] // n_upd
            tail = max(1, int(0.05 * n_upd)) * per_upd
            out["final_return_last5pct"] = [float(r[i, -tail:][done[i, -tail:] > 0].mean()) for i in range(num_seeds)]
    if isinstance(metrics, dict):
        for k, v in metrics.items():
            v = np.asarray(v)
            if "return" in k and k != "returned_episode" and not k.endswith("/returned_episode") and v.ndim == 2 and v.shape[0] == num_seeds:
                out[f"last[{k}]"] = [float(x) for x in v[:, -1]]
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("script")
    p.add_argument("--yaml", action="append", default=[])
    p.add_argument("--set", action="append", default=[])
    p.add_argument("--num-seeds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--make-train", default="make_train", help="name of the factory in the script")
    p.add_argument("--out", default=None, help="write the result JSON here too")
    a = p.parse_args()

    script = os.path.abspath(a.script)
    sys.path.insert(0, os.path.dirname(script))
    sys.path.insert(0, os.environ.get("RLX_REF", "/tmp/ref"))
    import jax

    cfg = load_config(a.yaml, a.set)
    spec = importlib.util.spec_from_file_location("ref_module", script)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    train = getattr(mod, a.make_train)(dict(cfg))

    keys = jax.random.split(jax.random.PRNGKey(a.seed), a.num_seeds)
    t0, c0 = time.time(), time.process_time()
    compiled = jax.jit(jax.vmap(train)).lower(keys).compile()
    compile_s, compile_cpu_s = time.time() - t0, time.process_time() - c0
    t0, c0 = time.time(), time.process_time()
    out = jax.block_until_ready(compiled(keys))
    run_s, run_cpu_s = time.time() - t0, time.process_time() - c0
    metrics = out.get("metrics") if isinstance(out, dict) else None
    res = {
        "script": script, "num_seeds": a.num_seeds, "seed": a.seed, "config": cfg,
        "compile_s": round(compile_s, 2), "run_s": round(run_s, 2),
        "compile_cpu_s": round(compile_cpu_s, 2), "run_cpu_s": round(run_cpu_s, 2),
        "jax": jax.__version__, "device": str(jax.devices()[0]), "python": platform.python_version(),
    }
    res.update(final_returns(metrics, a.num_seeds))
    for k, v in list(res.items()):
        if k.startswith("final_return") or k.startswith("last["):
            res[k + "_mean"] = float(np.mean(v))
    print(json.dumps(res, default=str))
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1, default=str)


if __name__ == "__main__":
    main()
