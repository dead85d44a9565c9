"""The shared runner and command line of every rlx algorithm.

    python algorithms/ppo.py --env CartPole-v1 --num-seeds 4 --sweep lr=1e-4,3e-4 --out runs/x

An algorithm hands its `Config` class and `make_train` to `main` (command line) or `run`
(Python). Every run (seed x sweep combination) is one slice of a leading axis that is vmapped
and sharded over the local devices. Training runs as jitted chunks of `update`s; between
chunks the host prints progress, appends to `metrics.csv`, evaluates and checkpoints.

A run directory holds `config.json`, `metrics.csv` (one row per run per log point),
`summary.json`, `checkpoint.npz` and `curve.png`. Checkpoints and summaries are written
atomically (temp file + rename); `--resume DIR` continues a killed run exactly.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import itertools
import json
import math
import os
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import xla_guard  # noqa: F401  (before anything starts JAX's backends)
from .config import ConfigError, check, is_static, to_dict, with_values
from .stats import bootstrap_ci, iqm

CHECKPOINT = "checkpoint.npz"
EPISODE_KEYS = ("episode_return_sum", "episode_count", "episode_length_sum")


class NonFiniteError(RuntimeError):
    """NaN or inf appeared in the metrics or the training state."""


@dataclasses.dataclass
class Result:
    summary: dict
    metrics: List[dict]  # the rows of metrics.csv
    state: Any  # final training state, leading axis = runs (seeds x sweep combinations)
    runs: List[dict]  # per run: seed index and swept values
    out: Optional[str]


# --------------------------------------------------------------------------------------------
# small file helpers


def atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _nan_to_none(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def save_checkpoint(path: str, state, host: dict) -> None:
    leaves = jax.tree.leaves(jax.device_get(state))
    buf = io.BytesIO()
    np.savez(buf, host=np.asarray(json.dumps(host, default=_json_default)), **{f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)})
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str, template):
    """Restore a state saved by `save_checkpoint` into the structure of `template`."""
    with np.load(path) as z:
        host = json.loads(str(z["host"]))
        leaves_t, treedef = jax.tree.flatten(template)
        n = sum(1 for k in z.files if k.startswith("leaf_"))
        if n != len(leaves_t):
            raise ConfigError(f"{path} holds {n} arrays but this run's state has {len(leaves_t)}: it was written by a different configuration or version")
        leaves = []
        for i, t in enumerate(leaves_t):
            a = z[f"leaf_{i}"]
            if a.shape != tuple(t.shape):
                raise ConfigError(f"{path}: array {i} has shape {a.shape}, expected {tuple(t.shape)}")
            leaves.append(a)
    return jax.tree.unflatten(treedef, leaves), host


def read_checkpoint_leaves(path: str) -> List[np.ndarray]:
    with np.load(path) as z:
        n = sum(1 for k in z.files if k.startswith("leaf_"))
        return [z[f"leaf_{i}"] for i in range(n)]


# --------------------------------------------------------------------------------------------
# configuration


def _field_type(f: dataclasses.Field):
    return type(f.default) if f.default is not dataclasses.MISSING else str


def parse_value(cfg_cls, name: str, text: str):
    """Parse one command-line value for Config field `name`."""
    fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
    typ = _field_type(fields[name])
    try:
        if typ is bool:
            low = text.lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if typ is tuple:
            inner = fields[name].default
            et = type(inner[0]) if inner else int
            return tuple(et(v) for v in text.replace(" ", "").split(",") if v)
        if typ is int:
            return int(float(text)) if ("e" in text.lower() or "." in text) and float(text).is_integer() else int(text)
        if typ is float:
            return float(text)
        return text
    except ValueError:
        raise ConfigError(f"--{name.replace('_', '-')}: cannot read {text!r} as {typ.__name__}") from None


def parse_sweeps(cfg_cls, sweeps: Sequence[str]) -> Dict[str, list]:
    out: Dict[str, list] = {}
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    for item in sweeps or ():
        check("=" in item, f"--sweep expects FIELD=v1,v2,... (got {item!r})")
        key, vals = item.split("=", 1)
        name = key.strip().replace("-", "_")
        check(name in names, f"--sweep: {cfg_cls.__module__} Config has no field {key!r}; fields: {', '.join(sorted(names))}")
        check(not is_static(cfg_cls, name), f"--sweep: {key!r} sets shapes or control flow and cannot be swept in one compiled program; start one run per value instead")
        typ = _field_type({f.name: f for f in dataclasses.fields(cfg_cls)}[name])
        check(typ in (int, float, bool), f"--sweep: only numeric fields can be swept ({key!r} is {typ.__name__})")
        values = [parse_value(cfg_cls, name, v) for v in vals.split(",") if v.strip()]
        check(len(values) >= 1, f"--sweep {key}: give at least one value")
        check(name not in out, f"--sweep: {key!r} given twice")
        out[name] = values
    return out


def build_config(cfg_cls, env: Optional[str], overrides: dict, preset: Optional[Callable] = None):
    """defaults -> preset(env) -> explicit overrides."""
    env = env or overrides.get("env") or cfg_cls().env
    values = dict(preset(env) if preset else {})
    values.update(overrides)
    values["env"] = env
    names = {f.name for f in dataclasses.fields(cfg_cls)}
    unknown = set(values) - names
    check(not unknown, f"unknown config fields {sorted(unknown)}")
    return cfg_cls(**values)


def _validate(cfg) -> None:
    try:
        cfg.validate()
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:  # e.g. unknown env from envs.make
        raise ConfigError(str(e)) from None


DONATE_MIN_BYTES = 256 * 2**20  # on CPU, donate chunk states larger than this


def shard_runs(x):
    """Place `x` (leading axis = runs, e.g. the PRNG keys of `jax.jit(jax.vmap(train))`) with that axis split
    over as many local devices as divide it evenly, for your own vmapped programs: on a CPU, where rlx asks
    for one device per core, the runs then train on every core. (`run` itself pads the runs instead.)
    Returns (placed x, number of devices used)."""
    n = max(k for k in range(1, min(jax.local_device_count(), x.shape[0]) + 1) if x.shape[0] % k == 0)
    if n == 1:
        return x, 1
    return jax.device_put(x, _runs_sharding(jax.local_devices()[:n])), n


def _runs_sharding(devices):
    """The leading (runs) axis split over `devices`."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    return NamedSharding(Mesh(np.asarray(devices), ("runs",)), P("runs"))


def _donate(state, devices) -> tuple:
    """Donating the state to each chunk saves a copy of it (replay buffers can be GBs), but made PPO's
    1-seed CartPole chunks ~30% slower on XLA:CPU (benchmarks/results/ppo_cartpole.md): donate off CPU,
    or on CPU once the state is big enough for the copy to matter."""
    nbytes = sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(state))
    return (0,) if devices[0].platform != "cpu" or nbytes > DONATE_MIN_BYTES else ()


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("rlx", "jax", "jaxlib", "flax", "optax", "distrax", "gymnax", "brax", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    out["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    return out


def _device_name() -> str:
    d = jax.devices()
    name = d[0].device_kind if d[0].platform != "cpu" else (platform.processor() or "cpu")
    if d[0].platform == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        name = line.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        return f"{len(d)}x cpu ({name}, {os.cpu_count()} cores)"
    return f"{len(d)}x {d[0].platform} ({name})"


# --------------------------------------------------------------------------------------------
# chunk planning


def plan_chunks(num_updates: int, target: int) -> List[int]:
    """Split `num_updates` into chunks of one size (at most one smaller remainder chunk, which
    costs a second compile). Prefers a divisor of num_updates close to `target`."""
    target = max(1, min(int(target), num_updates))
    best = None
    for k in range(max(1, target // 2), min(num_updates, 2 * target) + 1):
        if num_updates % k == 0 and (best is None or abs(k - target) < abs(best - target)):
            best = k
    if best is not None:
        return [best] * (num_updates // best)
    chunks = [target] * (num_updates // target)
    if num_updates % target:
        chunks.append(num_updates % target)
    return chunks


# --------------------------------------------------------------------------------------------
# loggers


class _Loggers:
    def __init__(self, kinds: Sequence[str], out: Optional[str], name: str, config: dict, resume: bool):
        self.tb = None
        self.wandb = None
        if "tensorboard" in kinds:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise ConfigError("--log tensorboard needs tensorboardX: pip install 'rlx[tensorboard]'") from None
            check(out is not None, "--log tensorboard needs an --out directory")
            self.tb = SummaryWriter(os.path.join(out, "tb"))
        if "wandb" in kinds:
            try:
                import wandb
            except ImportError:
                raise ConfigError("--log wandb needs wandb: pip install 'rlx[wandb]'") from None
            self.wandb = wandb.init(project="rlx", name=f"{name}-{config.get('env')}", config=config, dir=out, resume="allow" if resume else None)

    def log(self, step: int, scalars: dict):
        if self.tb is not None:
            for k, v in scalars.items():
                if v is not None and math.isfinite(v):
                    self.tb.add_scalar(k, v, step)
            self.tb.flush()
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in scalars.items() if v is not None}, step=step)

    def close(self):
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


# --------------------------------------------------------------------------------------------
# the run


def run(
    cfg_cls,
    make_train: Callable,
    config=None,
    *,
    name: str = "algorithm",
    num_seeds: int = 1,
    seed: int = 0,
    sweep: Optional[Dict[str, list]] = None,
    out: Optional[str] = None,
    log: Sequence[str] = ("csv",),
    log_every: Optional[int] = None,
    eval_every: int = 0,
    eval_episodes: Optional[int] = None,
    checkpoint_every: Optional[int] = None,
    resume: bool = False,
    progress: bool = True,
    memory_check: Optional[Callable] = None,
) -> Result:
    """Train `num_seeds` seeds x every combination of `sweep` values in one compiled program.

    log_every / eval_every / checkpoint_every are in env steps per seed (eval_every=0: evaluate
    once at the end; checkpoint_every=None: every 60 s and at the end). eval_episodes: episodes
    per evaluation (None: the algorithm's `Train.eval_episodes`; 0: no evaluation).
    With `out=None` nothing is written to disk.
    """
    config = config if config is not None else cfg_cls()
    sweep = dict(sweep or {})
    check(num_seeds >= 1, f"--num-seeds must be >= 1 (got {num_seeds})")
    unknown_logs = set(log) - {"csv", "tensorboard", "wandb"}
    check(not unknown_logs, f"--log: unknown logger(s) {sorted(unknown_logs)}; choose csv, tensorboard, wandb")
    _validate(config)
    combos = [dict(zip(sweep, vals)) for vals in itertools.product(*sweep.values())] if sweep else [{}]
    for combo in combos:
        if combo:
            _validate(dataclasses.replace(config, **combo))
    if memory_check is not None:
        memory_check(config, num_seeds * len(combos))

    # every run = (combo, seed); the leading axis is combos x seeds
    runs = [{"seed": s, **combo} for combo in combos for s in range(num_seeds)]
    n_runs = len(runs)
    # one device is enough for one run; more runs spread over up to every local device (on CPU rlx asks
    # for one device per core, rlx/xla_guard.py), padded with copies of the last run to fill them evenly
    devices = jax.local_devices()[:n_runs]
    n_dev = len(devices)
    n_pad = (-n_runs) % n_dev
    seed_keys = jax.random.split(jax.random.PRNGKey(seed), num_seeds)
    keys = jnp.concatenate([seed_keys] * len(combos))
    hp = {k: jnp.asarray([r[k] for r in runs]) for k in sweep}
    if n_pad:
        keys = jnp.concatenate([keys, jnp.repeat(keys[-1:], n_pad, 0)])
        hp = {k: jnp.concatenate([v, jnp.repeat(v[-1:], n_pad, 0)]) for k, v in hp.items()}
    for k, v in hp.items():  # swept fields keep their Python type's dtype
        typ = type(getattr(config, k))
        hp[k] = v.astype(jnp.float32 if typ is float else jnp.int32 if typ is int else bool)

    base = make_train(config)
    U, spu = int(base.num_updates), int(base.env_steps_per_update)
    check(U >= 1, f"total_timesteps={getattr(config, 'total_timesteps', '?')} gives no update; raise --total-timesteps")
    total_steps = U * spu
    if eval_episodes is None:
        eval_episodes = int(base.eval_episodes)
    check(eval_episodes >= 0, f"--eval-episodes must be >= 0 (got {eval_episodes}; 0 turns evaluation off)")
    has_eval = base.evaluate is not None and eval_episodes > 0
    if log_every is None:
        log_every = max(spu, total_steps // 50)
    chunks = plan_chunks(U, max(1, round(log_every / spu)))
    bounds = np.cumsum([0] + chunks)  # updates done after chunk i = bounds[i+1]

    # output directory
    cfg_dict = to_dict(config)
    run_meta = {"algorithm": name, "config": cfg_dict, "num_seeds": num_seeds, "seed": seed, "sweep": sweep,
                "log_every": int(log_every), "eval_every": int(eval_every), "eval_episodes": int(eval_episodes)}
    if out is not None:
        _prepare_out(out, resume, run_meta)

    # the compiled pieces
    def train_of(hpv):
        return make_train(with_values(config, **hpv)) if hpv else base

    def init_one(key, hpv):
        return train_of(hpv).init(key)

    def chunk_one(state, hpv, n):
        t = train_of(hpv)
        state, ms = jax.lax.scan(lambda s, _: t.update(s), state, None, n)
        leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
        finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)
        return state, ms, finite

    def eval_one(state, hpv, key):
        return train_of(hpv).evaluate(state, key, eval_episodes)

    if n_dev > 1:
        from jax.sharding import NamedSharding, PartitionSpec as P

        shard = _runs_sharding(devices)
        keys = jax.device_put(keys, shard)
        hp = jax.device_put(hp, shard)
        jit_kw = dict(in_shardings=shard, out_shardings=shard)
        eval_kw = dict(in_shardings=(shard, shard, NamedSharding(shard.mesh, P())), out_shardings=shard)
    else:
        jit_kw = eval_kw = {}

    t_compile = 0.0

    chunk_compiled: Dict[int, Any] = {}

    def get_chunk(n, state):
        nonlocal t_compile
        if n not in chunk_compiled:
            t0 = time.perf_counter()
            f = jax.jit(jax.vmap(lambda s, h: chunk_one(s, h, n)), donate_argnums=_donate(state, devices), **jit_kw)
            try:
                chunk_compiled[n] = f.lower(state, hp).compile()
            except jax.errors.ConcretizationTypeError as e:
                raise ConfigError(f"a swept field ({', '.join(sweep)}) is used for shapes or Python control flow in make_train and cannot be swept: {e}") from None
            t_compile += time.perf_counter() - t0
        return chunk_compiled[n]

    eval_c = None
    if has_eval:
        def eval_all(state, hpv, key):
            ks = jax.random.split(key, n_runs + n_pad)
            return jax.vmap(lambda s, h, k: eval_one(s, h, k))(state, hpv, ks)

        t0 = time.perf_counter()
        eval_c = jax.jit(eval_all, **eval_kw).lower(jax.eval_shape(jax.vmap(init_one), keys, hp), hp, jax.random.PRNGKey(0)).compile()
        t_compile += time.perf_counter() - t0

    # state: fresh or from the checkpoint
    host = {"chunk": 0, "csv_bytes": 0, "window_sum": [0.0] * n_runs, "window_cnt": [0.0] * n_runs,
            "best": [None] * n_runs, "last_eval": [None] * n_runs, "wall_s": 0.0, "train_s": 0.0, "evals": 0}
    ckpt_path = os.path.join(out, CHECKPOINT) if out else None
    if resume:
        template = jax.eval_shape(jax.vmap(init_one), keys[:n_runs], {k: v[:n_runs] for k, v in hp.items()})
        state, host = load_checkpoint(ckpt_path, template)  # saved without the padding rows: add them back
        state = jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[-1:], n_pad, 0)]) if n_pad else x, state)
        state = jax.device_put(state, shard) if n_dev > 1 else jax.device_put(state)
        _truncate(os.path.join(out, "metrics.csv"), host["csv_bytes"])
    else:  # a resumed run never needs the init program
        t0 = time.perf_counter()
        init_c = jax.jit(jax.vmap(init_one), **jit_kw).lower(keys, hp).compile()
        t_compile += time.perf_counter() - t0
        state = init_c(keys, hp)

    state_shape = jax.eval_shape(lambda: state)
    for n in sorted(set(chunks[host["chunk"]:])):  # compile every chunk size before the clock starts
        get_chunk(n, state_shape)

    metric_names: Optional[List[str]] = None
    csv_path = os.path.join(out, "metrics.csv") if out else None
    loggers = _Loggers([l for l in log if l != "csv"], out, name, run_meta, resume)
    rows: List[dict] = []
    window_start = int(math.floor(0.95 * U))
    last_ckpt_time = time.perf_counter()
    ckpt_every_chunks = None
    if checkpoint_every:
        ckpt_every_chunks = max(1, round(checkpoint_every / (chunks[0] * spu)))
    eval_every_upd = max(1, round(eval_every / spu)) if eval_every else None
    label = f"[{name} {config.env}]"
    if progress:
        print(f"{label} {n_runs} run(s) ({num_seeds} seed(s) x {len(combos)} setting(s)) on {_device_name()}"
              f" ({n_dev} in use); "
              f"{U} updates x {spu} env steps per seed in {len(chunks)} chunks", flush=True)

    loop_start = time.perf_counter() - host["wall_s"]
    i = host["chunk"]
    while i < len(chunks):
        n = chunks[i]
        f = get_chunk(n, state)
        t0 = time.perf_counter()
        state, ms, finite = f(state, hp)
        ms = jax.device_get(ms)
        finite = np.asarray(jax.device_get(finite))[:n_runs]
        host["train_s"] += time.perf_counter() - t0
        ms = {k: np.asarray(v)[:n_runs] for k, v in ms.items()}
        u_lo, u_hi = int(bounds[i]), int(bounds[i + 1])
        _check_finite(ms, finite, runs, u_lo, ckpt_path, spu)

        # episode statistics and the final-window accumulators
        ep_sum, ep_cnt, ep_len = (ms[k].sum(1) for k in EPISODE_KEYS)
        upd_idx = np.arange(u_lo, u_hi)
        in_win = upd_idx >= window_start
        host["window_sum"] = list(np.asarray(host["window_sum"]) + ms["episode_return_sum"][:, in_win].sum(1))
        host["window_cnt"] = list(np.asarray(host["window_cnt"]) + ms["episode_count"][:, in_win].sum(1))

        # evaluation
        eval_ret = None
        last = i == len(chunks) - 1
        if has_eval and (last or (eval_every_upd and (u_hi // eval_every_upd) > (u_lo // eval_every_upd))):
            ekey = jax.random.fold_in(jax.random.PRNGKey(seed + 1_000_003), u_hi)
            eval_ret = np.asarray(jax.device_get(eval_c(state, hp, ekey)))[:n_runs]
            host["last_eval"] = [float(x) for x in eval_ret]
            host["evals"] += 1

        if metric_names is None:
            metric_names = sorted(k for k in ms if k not in EPISODE_KEYS)
        env_steps = u_hi * spu
        new_rows = []
        for r in range(n_runs):
            ret = float(ep_sum[r] / ep_cnt[r]) if ep_cnt[r] > 0 else float("nan")
            if math.isfinite(ret):
                b = host["best"][r]
                host["best"][r] = ret if b is None else max(b, ret)
            row = {"env_steps": env_steps, "update": u_hi, "run": r, **runs[r],
                   "episode_return": ret,
                   "episode_length": float(ep_len[r] / ep_cnt[r]) if ep_cnt[r] > 0 else float("nan"),
                   "episodes": int(ep_cnt[r]),
                   "eval_return": float(eval_ret[r]) if eval_ret is not None else float("nan")}
            for k in metric_names:
                row[k] = float(np.mean(ms[k][r]))
            new_rows.append(row)
        rows.extend(new_rows)
        if csv_path:
            host["csv_bytes"] = _append_csv(csv_path, new_rows)
        host["wall_s"] = time.perf_counter() - loop_start
        host["chunk"] = i + 1

        # progress and loggers
        mean_ret = _nanmean([r["episode_return"] for r in new_rows])
        scal = {"train/episode_return": mean_ret}
        if eval_ret is not None:
            scal["eval/return"] = float(np.mean(eval_ret))
        for k in metric_names:
            scal[f"train/{k}"] = _nanmean([r[k] for r in new_rows])
        loggers.log(env_steps, scal)
        if progress:
            done_frac = u_hi / U
            sps = env_steps * n_runs / max(host["wall_s"], 1e-9)
            eta = host["wall_s"] * (1 - done_frac) / max(done_frac, 1e-9)
            msg = f"{label} {env_steps:,}/{total_steps:,} steps ({100 * done_frac:5.1f}%) | {sps:,.0f} steps/s | ETA {_fmt_time(eta)} | return {mean_ret:.2f}"
            if eval_ret is not None:
                msg += f" | eval {np.mean(eval_ret):.2f}"
            print(msg, flush=True)

        # checkpoint
        if ckpt_path:
            due = last or (ckpt_every_chunks is not None and (i + 1) % ckpt_every_chunks == 0) or \
                (ckpt_every_chunks is None and time.perf_counter() - last_ckpt_time > 60)
            if due:
                save_checkpoint(ckpt_path, jax.tree.map(lambda x: x[:n_runs], state), host)
                last_ckpt_time = time.perf_counter()
        i += 1
    loggers.close()

    # summary
    window = [s / c if c > 0 else float("nan") for s, c in zip(host["window_sum"], host["window_cnt"])]
    final = host["last_eval"] if has_eval else window
    final = [float(x) if x is not None else float("nan") for x in final]
    summary = {
        "algorithm": name, "env": config.env, "num_seeds": num_seeds, "num_runs": n_runs, "runs": runs,
        "sweep": sweep, "env_steps": total_steps,
        "final_return_source": "final evaluation" if has_eval else "training episodes in the last 5% of updates",
        **_return_stats("final_return", final),
        "train_return_last5pct": [_nan_to_none(x) for x in window],
        "best_return": host["best"],
        "wall_s": host["wall_s"], "train_s": host["train_s"], "compile_s": t_compile,
        "env_steps_per_s": total_steps * n_runs / max(host["wall_s"], 1e-9),
        "device": _device_name(), "devices": n_dev, "versions": _versions(), "resumed": bool(resume),
    }
    if sweep:
        summary["sweep_results"] = [
            {**combo, **_return_stats("final_return", final[c * num_seeds:(c + 1) * num_seeds])}
            for c, combo in enumerate(combos)]
    if out:
        atomic_write_json(os.path.join(out, "summary.json"), summary)
        try:
            plot_curve(os.path.join(out, "curve.png"), _read_csv(csv_path), sweep, title=f"{name} on {config.env}")
        except Exception as e:  # a plot failure must not lose the run
            print(f"{label} could not draw curve.png: {e}", file=sys.stderr)
    if progress:
        print(f"{label} final return {summary['final_return_mean']:.2f} (IQM {summary['final_return_iqm']:.2f}, "
              f"95% CI [{summary['final_return_ci95'][0]:.2f}, {summary['final_return_ci95'][1]:.2f}]) | "
              f"train {host['wall_s']:.1f}s, compile {t_compile:.1f}s" + (f" | {out}" if out else ""), flush=True)
    state = jax.tree.map(lambda x: x[:n_runs], state)
    return Result(summary, _read_csv(csv_path) if csv_path else rows, state, runs, out)


def _return_stats(prefix: str, values: Sequence[float]) -> dict:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    if v.size == 0:
        return {prefix: [_nan_to_none(x) for x in values], f"{prefix}_mean": float("nan"), f"{prefix}_iqm": float("nan"),
                f"{prefix}_ci95": [float("nan"), float("nan")], f"{prefix}_iqm_ci95": [float("nan"), float("nan")]}
    return {prefix: [_nan_to_none(float(x)) for x in values], f"{prefix}_mean": float(v.mean()), f"{prefix}_iqm": iqm(v),
            f"{prefix}_ci95": bootstrap_ci(v, np.mean), f"{prefix}_iqm_ci95": bootstrap_ci(v, iqm)}


def _check_finite(ms: dict, finite: np.ndarray, runs: List[dict], u_lo: int, ckpt: Optional[str], spu: int):
    bad = []
    for r in range(len(runs)):
        per_update = np.ones(next(iter(ms.values())).shape[1], bool)
        for v in ms.values():
            per_update &= np.isfinite(v[r])
        if not per_update.all():
            u = u_lo + int(np.argmin(per_update)) + 1
            bad.append(f"run {r} ({_run_label(runs[r])}) at update {u} (env step {u * spu:,}): non-finite "
                       + ", ".join(k for k, v in ms.items() if not np.isfinite(v[r]).all()))
        elif not finite[r]:
            bad.append(f"run {r} ({_run_label(runs[r])}): non-finite values in the training state by update {u_lo + next(iter(ms.values())).shape[1]}")
    if bad:
        where = f"; the last good checkpoint is kept at {ckpt}" if ckpt and os.path.exists(ckpt) else ""
        raise NonFiniteError("training diverged: " + "; ".join(bad) + where)


def _run_label(run: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in run.items())


def _nanmean(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def _fmt_time(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _prepare_out(out: str, resume: bool, meta: dict) -> None:
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".write_test{os.getpid()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"--out {out!r} is not writable ({e.strerror}); choose another directory") from None
    cfg_path = os.path.join(out, "config.json")
    if resume:
        check(os.path.exists(os.path.join(out, CHECKPOINT)), f"--resume {out}: no {CHECKPOINT} there; nothing to resume")
        with open(cfg_path) as f:
            saved = json.load(f)
        diffs = _diff(saved, json.loads(json.dumps(meta, default=_json_default)))
        check(not diffs, f"--resume {out}: this run's settings differ from the saved ones: {'; '.join(diffs)}. "
                         "Resume with the same settings (or none: they are read from config.json), or start a new --out")
    else:
        check(not os.path.exists(os.path.join(out, CHECKPOINT)),
              f"--out {out} already holds a run; continue it with --resume {out} or choose a new --out")
        atomic_write_json(cfg_path, meta)
        if os.path.exists(os.path.join(out, "metrics.csv")):
            os.remove(os.path.join(out, "metrics.csv"))


def _diff(a, b, path="") -> List[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{path}.{k}" if path else k)
        return out
    return [] if a == b else [f"{path}: saved {a!r}, now {b!r}"]


def _append_csv(path: str, rows: List[dict]) -> int:
    exists = os.path.exists(path) and os.path.getsize(path) > 0
    with open(path, "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        if not exists:
            w.writeheader()
        w.writerows(rows)
        f.flush()
        os.fsync(f.fileno())
        return f.tell()


def _truncate(path: str, nbytes: int) -> None:
    if os.path.exists(path):
        with open(path, "r+b") as f:
            f.truncate(nbytes)


def _read_csv(path: Optional[str]) -> List[dict]:
    if not path or not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        rows = []
        for row in csv.DictReader(f):
            conv = {}
            for k, v in row.items():
                try:
                    conv[k] = int(v) if v.lstrip("-").isdigit() else float(v)
                except ValueError:
                    conv[k] = v
            rows.append(conv)
        return rows


def plot_curve(path: str, rows: List[dict], sweep: dict, title: str = "") -> None:
    """Mean and 95% bootstrap CI over seeds of the training return vs env steps (one line per
    sweep setting), written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    groups: Dict[tuple, Dict[int, List[float]]] = {}
    for r in rows:
        key = tuple((k, r[k]) for k in sweep)
        groups.setdefault(key, {}).setdefault(int(r["env_steps"]), []).append(float(r["episode_return"]))
    for key, pts in groups.items():
        xs = sorted(pts)
        mean, lo, hi = [], [], []
        for x in xs:
            v = np.asarray([y for y in pts[x] if math.isfinite(y)])
            if v.size == 0:
                mean.append(np.nan); lo.append(np.nan); hi.append(np.nan)
                continue
            mean.append(v.mean())
            a, b = bootstrap_ci(v, np.mean, n_boot=500)
            lo.append(a); hi.append(b)
        lab = ", ".join(f"{k}={v}" for k, v in key) or None
        ax.plot(xs, mean, label=lab)
        ax.fill_between(xs, lo, hi, alpha=0.25)
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("episode return (training)")
    ax.set_title(title)
    if any(k for k in groups):
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


# --------------------------------------------------------------------------------------------
# command line


def build_parser(cfg_cls, name: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python algorithms/{name}.py",
                                description=(sys.modules[cfg_cls.__module__].__doc__ or "").strip().split("\n")[0],
                                argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, help="base seed (default 0); seed i of --num-seeds uses split(PRNGKey(seed))[i]")
    g.add_argument("--num-seeds", type=int, help="independent seeds trained side by side (default 1)")
    g.add_argument("--sweep", action="append", metavar="FIELD=v1,v2", help="sweep a Config field; several allowed: all combinations x seeds run in one program")
    g.add_argument("--out", help="run directory (default runs/<algorithm>/<env>/<time>)")
    g.add_argument("--log", help="comma-separated loggers: csv (always), tensorboard, wandb")
    g.add_argument("--log-every", type=int, help="env steps per seed between log points (default total/50)")
    g.add_argument("--eval-every", type=int, help="env steps between evaluations (default 0: at the end only)")
    g.add_argument("--eval-episodes", type=int, help="episodes per evaluation (default: the algorithm's, e.g. 16 for PPO, 128 for PQN; 0 disables)")
    g.add_argument("--checkpoint-every", type=int, help="env steps between checkpoints (default: every 60 s and at the end)")
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR (settings are read from DIR/config.json)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, help="print a progress line per chunk (default on)")
    c = p.add_argument_group("config (defaults follow the env family's reference preset)")
    for f in dataclasses.fields(cfg_cls):
        flag = "--" + f.name.replace("_", "-")
        typ = _field_type(f)
        hlp = f.metadata.get("help", "") + f" (default {f.default!r})"
        if f.metadata.get("static"):
            hlp += " [static: cannot be swept]"
        if typ is bool:
            c.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=hlp)
        else:
            c.add_argument(flag, dest=f.name, metavar=typ.__name__.upper(), help=hlp)
    return p


def main(cfg_cls, make_train: Callable, name: str, preset: Optional[Callable] = None,
         memory_check: Optional[Callable] = None, argv: Optional[Sequence[str]] = None) -> Result:
    args = vars(build_parser(cfg_cls, name).parse_args(argv))
    try:
        return _main(cfg_cls, make_train, name, preset, memory_check, args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(3)


def _main(cfg_cls, make_train, name, preset, memory_check, args: dict) -> Result:
    field_names = {f.name for f in dataclasses.fields(cfg_cls)}
    overrides = {k: (v if isinstance(v, bool) else parse_value(cfg_cls, k, v)) for k, v in args.items() if k in field_names}
    runner_args = {k: v for k, v in args.items() if k not in field_names}
    resume = runner_args.pop("resume", None)
    if resume:
        cfg_path = os.path.join(resume, "config.json")
        check(os.path.exists(cfg_path), f"--resume {resume}: no config.json there; is it an rlx run directory?")
        with open(cfg_path) as f:
            saved = json.load(f)
        check(saved.get("algorithm") == name, f"--resume {resume}: that run is {saved.get('algorithm')!r}, not {name!r}")
        saved_cfg = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved["config"].items()}
        cfg = cfg_cls(**{**saved_cfg, **overrides})  # differences are reported by _prepare_out
        sweep = parse_sweeps(cfg_cls, runner_args["sweep"]) if "sweep" in runner_args else \
            {k: list(v) for k, v in saved["sweep"].items()}
        kw = dict(num_seeds=runner_args.get("num_seeds", saved["num_seeds"]), seed=runner_args.get("seed", saved["seed"]),
                  log_every=runner_args.get("log_every", saved["log_every"]),
                  eval_every=runner_args.get("eval_every", saved["eval_every"]),
                  eval_episodes=runner_args.get("eval_episodes", saved["eval_episodes"]), out=resume, resume=True)
        check(runner_args.get("out", resume) == resume, "--resume DIR writes to DIR; drop --out")
    else:
        cfg = build_config(cfg_cls, overrides.pop("env", None), overrides, preset)
        sweep = parse_sweeps(cfg_cls, runner_args.get("sweep", []))
        out = runner_args.get("out") or os.path.join("runs", name, cfg.env.replace("/", "_"), time.strftime("%Y%m%d-%H%M%S"))
        kw = dict(num_seeds=runner_args.get("num_seeds", 1), seed=runner_args.get("seed", 0),
                  log_every=runner_args.get("log_every"), eval_every=runner_args.get("eval_every", 0),
                  eval_episodes=runner_args.get("eval_episodes"), out=out, resume=False)
    logs = tuple(x.strip() for x in runner_args.get("log", "csv").split(",") if x.strip())
    return run(cfg_cls, make_train, cfg, name=name, sweep=sweep, log=logs,
               checkpoint_every=runner_args.get("checkpoint_every"), progress=runner_args.get("progress", True),
               memory_check=memory_check, **kw)
