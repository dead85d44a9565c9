"""`run()`: train every (seed x sweep setting) of an algorithm in one compiled program.

    from rlx.run import run
    import rlx.algorithms.ppo as ppo
    res = run(ppo.Config, ppo.make_train, ppo.Config(env="CartPole-v1"), name="ppo", num_seeds=4, out="runs/x")

It reads as plan -> compile -> loop over chunks -> summarise. Every run (seed x sweep setting) is one
slice of a leading axis that is vmapped and sharded over the local devices (padded to a multiple of
their number). Training runs as jitted chunks of `update`s; between chunks the host checks for
NaNs, appends to `metrics.csv`, evaluates and checkpoints (`rlx.rundir`). Run i of `num_seeds` uses
`jax.random.PRNGKey(seed + i)`. The runner reads only the `rlx.train.Train` that `make_train` returns.
The command line is `rlx.cli`; it turns flags into a call of `run`.
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import numpy as np

from . import devices as dv
from . import report
from . import rundir
from .config import ConfigError, to_dict
from .plan import Plan, header, make_plan, plan_chunks, steps_note  # noqa: F401  (plan_chunks: public)
from .devices import shard_runs  # noqa: F401  (also offered here, for your own vmapped programs)
from .programs import Programs, check_memory
from .rundir import CHECKPOINT  # noqa: F401

EPISODE_KEYS = ("episode_return_sum", "episode_count", "episode_length_sum")
# how error messages spell the options of the Python API (rlx.cli passes its flags instead)
PYTHON_NAMES = {**{k: k for k in ("out", "num_seeds", "seed", "log", "log_every", "eval_every", "eval_episodes",
                                  "checkpoint_every", "sweep")}, "resume": "resume=True", "overwrite": "overwrite=True"}


class NonFiniteError(RuntimeError):
    """NaN or inf appeared in the metrics or the training state."""


@dataclasses.dataclass
class Result:
    summary: dict
    metrics: List[dict]  # the rows of metrics.csv
    state: Any  # final training state, leading axis = runs (seeds x sweep combinations)
    runs: List[dict]  # per run: seed and swept values
    out: Optional[str]


@dataclasses.dataclass
class HostState:
    """What the host keeps between chunks; saved in every checkpoint (as JSON) so resume is exact."""
    chunk: int = 0  # chunks done
    csv_bytes: int = 0  # size of metrics.csv after them
    window_sum: List[float] = dataclasses.field(default_factory=list)  # returns in the last 5% of updates
    window_cnt: List[float] = dataclasses.field(default_factory=list)
    best: List[Optional[float]] = dataclasses.field(default_factory=list)
    last_eval: List[Optional[float]] = dataclasses.field(default_factory=list)
    wall_s: float = 0.0
    train_s: float = 0.0
    evals: int = 0

    @classmethod
    def fresh(cls, n_runs: int) -> "HostState":
        return cls(window_sum=[0.0] * n_runs, window_cnt=[0.0] * n_runs, best=[None] * n_runs,
                   last_eval=[None] * n_runs)

    @classmethod
    def from_json(cls, d: dict) -> "HostState":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def run(cfg_cls, make_train: Callable, config=None, *, name: str = "algorithm", num_seeds: int = 1, seed: int = 0,
        sweep: Optional[Dict[str, list]] = None, out: Optional[str] = None, log: Sequence[str] = ("csv",),
        log_every: Optional[int] = None, eval_every: int = 0, eval_episodes: Optional[int] = None,
        checkpoint_every: Optional[int] = None, resume: bool = False, overwrite: bool = False,
        progress: bool = True, names: Optional[dict] = None) -> Result:
    """Train `num_seeds` seeds x every combination of `sweep` values in one compiled program.

    log_every / eval_every / checkpoint_every are in env steps per seed (eval_every=0: evaluate once at
    the end; checkpoint_every=None: after the first chunk, then every 60 s and at the end). eval_episodes:
    episodes per evaluation (None: the algorithm's `Train.eval_episodes`; 0: no evaluation). With
    `out=None` nothing is written; `resume=True` continues the run in `out`, `overwrite=True` replaces it.
    `names` spells the options in error messages (the command line passes its flags).
    """
    nm = dict(PYTHON_NAMES, **(names or {}))
    config = config if config is not None else cfg_cls()
    plan, base, combos = make_plan(cfg_cls, make_train, config, nm, num_seeds=num_seeds, seed=seed, sweep=dict(sweep or {}),
                               log=log, out=out, log_every=log_every, eval_every=eval_every,
                               eval_episodes=eval_episodes, checkpoint_every=checkpoint_every, resume=resume)
    sweep = dict(sweep or {})
    meta = {"algorithm": name, "config": to_dict(config), "num_seeds": num_seeds, "seed": seed, "sweep": sweep,
            "log_every": plan.log_every, "eval_every": plan.eval_every, "eval_episodes": plan.eval_episodes}
    rdir = rundir.RunDir(out, resume, overwrite, meta, nm) if out is not None else None
    try:
        loaded = rundir.load_latest_checkpoint(out, rundir.resume_hint(nm, out)) if resume else None
        progs = Programs(make_train, config, base, plan, sweep)
        if loaded:  # shapes checked before compiling
            loaded = (loaded[0], rundir.restore(loaded[0], loaded[1], progs.state_shape(plan.n_runs)), loaded[2])
        progs.compile(plan.chunks[loaded[2]["chunk"] if loaded else 0:], with_init=not loaded)
        memory = check_memory(progs, plan, num_seeds, len(combos), nm)
        label = f"[{name} {base.env_name}]" if base.env_name else f"[{name}]"
        if progress:
            print(header(label, plan, base, num_seeds, len(combos), memory), flush=True)
        if rdir is not None:
            rdir.begin()
        state, host = _start(progs, plan, loaded)
        state, host, rows = _train(progs, plan, state, host, out, label, progress, name, meta, log, resume, seed, nm)
        summary = _summarise(plan, base, host, name, num_seeds, seed, sweep, combos, progs.compile_s, resume, memory)
        if out:
            try:
                rundir.atomic_write_json(os.path.join(out, "summary.json"), summary)
            except OSError as e:
                raise _write_error(e, out, plan, nm) from None
            report.try_plot(os.path.join(out, "curve.png"), rundir.read_csv(os.path.join(out, rundir.METRICS)),
                            sweep, f"{name} on {base.env_name}", label)
    finally:
        if rdir is not None:
            rdir.close()
    if progress:
        s = summary
        print(f"{label} final return {s['final_return_mean']:.2f} (IQM {s['final_return_iqm']:.2f}, 95% CI "
              f"[{s['final_return_ci95'][0]:.2f}, {s['final_return_ci95'][1]:.2f}]) | {plan.total_steps:,} env steps "
              f"per run | train {host.wall_s:.1f}s, compile {progs.compile_s:.1f}s" + (f" | {out}" if out else ""),
              flush=True)
    state = jax.tree.map(lambda x: x[:plan.n_runs], state)
    return Result(summary, rundir.read_csv(os.path.join(out, rundir.METRICS)) if out else rows, state, plan.runs, out)


# --------------------------------------------------------------------------------------------
# the loop over chunks


def _start(progs: Programs, plan: Plan, loaded):
    if loaded is None:
        return progs.init(plan.keys, plan.hp), HostState.fresh(plan.n_runs)
    path, state, host_d = loaded  # saved without the padding rows: add them back
    host = HostState.from_json(host_d)
    state = jax.tree.map(lambda x: np.concatenate([x, np.repeat(x[-1:], plan.n_pad, 0)]) if plan.n_pad else x, state)
    state = jax.device_put(state, progs.shard) if progs.shard is not None else jax.device_put(state)
    rundir.truncate(os.path.join(os.path.dirname(path), rundir.METRICS), host.csv_bytes)
    return state, host


def _train(progs, plan: Plan, state, host: HostState, out, label, progress, name, meta, log, resume, seed, nm):
    """Chunks from host.chunk to the end: train, check, log, evaluate, checkpoint."""
    csv_path = os.path.join(out, rundir.METRICS) if out else None
    loggers = report.Loggers([k for k in log if k != "csv"], out, name, meta, resume)
    rows: List[dict] = []
    metric_names: Optional[List[str]] = None
    U, spu, n_runs, bounds = plan.num_updates, plan.steps_per_update, plan.n_runs, plan.bounds
    window_start = int(math.floor(0.95 * U))
    eval_every_upd = max(1, round(plan.eval_every / spu)) if plan.eval_every else None
    last_ckpt_time = time.perf_counter()
    first_chunk = host.chunk
    loop_start = time.perf_counter() - host.wall_s
    try:
        for i in range(host.chunk, len(plan.chunks)):
            t0 = time.perf_counter()
            state, ms, finite = progs.chunk[plan.chunks[i]](state, plan.hp)
            ms = {k: np.asarray(v)[:n_runs] for k, v in jax.device_get(ms).items()}
            finite = np.asarray(jax.device_get(finite))[:n_runs]
            host.train_s += time.perf_counter() - t0
            u_lo, u_hi = int(bounds[i]), int(bounds[i + 1])
            _check_finite(ms, finite, plan.runs, u_lo, os.path.join(out, rundir.CHECKPOINT) if out else None, spu)

            ep_sum, ep_cnt, ep_len = (ms[k].sum(1) for k in EPISODE_KEYS)
            in_win = np.arange(u_lo, u_hi) >= window_start
            host.window_sum = [float(x) for x in np.asarray(host.window_sum) + ms["episode_return_sum"][:, in_win].sum(1)]
            host.window_cnt = [float(x) for x in np.asarray(host.window_cnt) + ms["episode_count"][:, in_win].sum(1)]

            eval_ret = None
            last = i == len(plan.chunks) - 1
            if plan.has_eval and (last or (eval_every_upd and (u_hi // eval_every_upd) > (u_lo // eval_every_upd))):
                ekey = jax.random.fold_in(jax.random.PRNGKey(seed + 1_000_003), u_hi)
                eval_ret = np.asarray(jax.device_get(progs.eval(state, plan.hp, ekey)))[:n_runs]
                host.last_eval = [float(x) for x in eval_ret]
                host.evals += 1

            if metric_names is None:
                metric_names = sorted(k for k in ms if k not in EPISODE_KEYS)
            new_rows = []
            for r in range(n_runs):
                ret = float(ep_sum[r] / ep_cnt[r]) if ep_cnt[r] > 0 else float("nan")
                if math.isfinite(ret):
                    host.best[r] = ret if host.best[r] is None else max(host.best[r], ret)
                row = {"env_steps": u_hi * spu, "update": u_hi, "run": r, **plan.runs[r], "episode_return": ret,
                       "episode_length": float(ep_len[r] / ep_cnt[r]) if ep_cnt[r] > 0 else float("nan"),
                       "episodes": int(ep_cnt[r]),
                       "eval_return": float(eval_ret[r]) if eval_ret is not None else float("nan")}
                row.update({k: float(np.mean(ms[k][r])) for k in metric_names})
                new_rows.append(row)
            rows.extend(new_rows)
            if csv_path:
                host.csv_bytes = rundir.append_csv(csv_path, new_rows)
            host.wall_s = time.perf_counter() - loop_start
            host.chunk = i + 1

            mean_ret = report.nanmean([r["episode_return"] for r in new_rows])
            scal = {"train/episode_return": mean_ret, **({"eval/return": float(np.mean(eval_ret))} if eval_ret is not None else {})}
            scal.update({f"train/{k}": report.nanmean([r[k] for r in new_rows]) for k in metric_names})
            loggers.log(u_hi * spu, scal)
            if progress:
                frac = u_hi / U
                sps = u_hi * spu * n_runs / max(host.wall_s, 1e-9)
                eta = host.wall_s * (1 - frac) / max(frac, 1e-9)
                print(f"{label} {u_hi * spu:,}/{plan.total_steps:,} steps ({100 * frac:5.1f}%) | {sps:,.0f} steps/s | "
                      f"ETA {report.fmt_time(eta)} | return {mean_ret:.2f}"
                      + (f" | eval {np.mean(eval_ret):.2f}" if eval_ret is not None else ""), flush=True)

            if out:  # after the first chunk, then every checkpoint_every (or 60 s), and at the end
                every = plan.ckpt_every_chunks
                due = last or i == first_chunk or (every is not None and (i + 1) % every == 0) or \
                    (every is None and time.perf_counter() - last_ckpt_time > 60)
                if due:
                    leaves = jax.tree.leaves(jax.device_get(jax.tree.map(lambda x: x[:n_runs], state)))
                    rundir.save_checkpoint(out, leaves, dataclasses.asdict(host))
                    last_ckpt_time = time.perf_counter()
    except OSError as e:
        raise _write_error(e, out, plan, nm) from None
    finally:
        loggers.close()
    return state, host, rows


def _write_error(e: OSError, out, plan: Plan, nm) -> ConfigError:
    where = e.filename or out
    ckpt = os.path.join(out, rundir.CHECKPOINT) if out else None
    try:
        _, h = rundir.read_checkpoint(ckpt)
        good = (f"the last good checkpoint is {ckpt} ({int(h['chunk'])} of {len(plan.chunks)} chunks, "
                f"{int(plan.bounds[int(h['chunk'])]) * plan.steps_per_update:,} env steps); free space or make "
                f"{out} writable, then continue with {rundir.resume_hint(nm, out)}")
    except (ConfigError, TypeError):
        good = "no checkpoint was written yet"
    if out:
        rundir.remove_temp_files(out)
    return rundir.OutputError(f"could not write {where}: {e.strerror or e}; {good}")


def _check_finite(ms: dict, finite: np.ndarray, runs: List[dict], u_lo: int, ckpt: Optional[str], spu: int):
    bad = []
    n_upd = next(iter(ms.values())).shape[1]
    for r in range(len(runs)):
        per_update = np.ones(n_upd, bool)
        for v in ms.values():
            per_update &= np.isfinite(v[r])
        if not per_update.all():
            u = u_lo + int(np.argmin(per_update)) + 1
            bad.append(f"run {r} ({report.run_label(runs[r])}) at update {u} (env step {u * spu:,}): non-finite "
                       + ", ".join(k for k, v in ms.items() if not np.isfinite(v[r]).all()))
        elif not finite[r]:
            bad.append(f"run {r} ({report.run_label(runs[r])}): non-finite values in the training state by update "
                       f"{u_lo + n_upd}")
    if bad:
        where = f"; the last good checkpoint is kept at {ckpt}" if ckpt and os.path.exists(ckpt) else ""
        raise NonFiniteError("training diverged: " + "; ".join(bad) + where)


# --------------------------------------------------------------------------------------------
# summarise


def _summarise(plan: Plan, base, host: HostState, name, num_seeds, seed, sweep, combos, compile_s, resume, memory):
    window = [s / c if c > 0 else float("nan") for s, c in zip(host.window_sum, host.window_cnt)]
    final = [float(x) if x is not None else float("nan") for x in (host.last_eval if plan.has_eval else window)]
    summary = {
        "algorithm": name, "env": base.env_name, "num_seeds": num_seeds, "seeds": [seed + s for s in range(num_seeds)],
        "num_runs": plan.n_runs, "runs": plan.runs, "sweep": sweep,
        "env_steps": plan.total_steps, "env_steps_requested": base.requested_steps,
        "env_steps_note": steps_note(plan, base),
        "final_return_source": "final evaluation" if plan.has_eval else "training episodes in the last 5% of updates",
        **report.return_stats("final_return", final),
        "train_return_last5pct": [rundir.nan_to_none(x) for x in window],
        "best_return": host.best,
        "wall_s": host.wall_s, "train_s": host.train_s, "compile_s": compile_s,
        "env_steps_per_s": plan.total_steps * plan.n_runs / max(host.wall_s, 1e-9),
        "device": dv.device_name(), "devices": len(plan.devices), "memory": memory,
        "versions": report.versions(), "resumed": bool(resume),
    }
    if sweep:
        summary["sweep_results"] = [
            {**combo, **report.return_stats("final_return", final[c * num_seeds:(c + 1) * num_seeds])}
            for c, combo in enumerate(combos)]
    return summary
