"""Reporting: summary statistics over seeds, progress lines, versions, loggers (tensorboard, wandb)
and the learning curve. matplotlib, tensorboardX and wandb are imported only when used."""
from __future__ import annotations

import importlib.util
import math
import os
import platform
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np

from .config import check
from .rundir import nan_to_none
from .stats import bootstrap_ci, iqm

LOGGERS = {"csv": None, "tensorboard": ("tensorboardX", "tensorboard"), "wandb": ("wandb", "wandb")}


def return_stats(prefix: str, values: Sequence[float]) -> dict:
    """Per-run values, their mean, IQM and 95% bootstrap CIs (NaN runs left out of the statistics)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], np.float64)
    per_run = [nan_to_none(float(x)) if x is not None else None for x in values]
    if v.size == 0:
        nan2 = [float("nan"), float("nan")]
        return {prefix: per_run, f"{prefix}_mean": float("nan"), f"{prefix}_iqm": float("nan"),
                f"{prefix}_ci95": nan2, f"{prefix}_iqm_ci95": nan2}
    return {prefix: per_run, f"{prefix}_mean": float(v.mean()), f"{prefix}_iqm": iqm(v),
            f"{prefix}_ci95": bootstrap_ci(v, np.mean), f"{prefix}_iqm_ci95": bootstrap_ci(v, iqm)}


def nanmean(xs) -> float:
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    return float(np.mean(xs)) if xs else float("nan")


def fmt_time(s: float) -> str:
    s = int(max(0, s))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def fmt_bytes(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**28 else f"{n / 2**20:.1f} MiB"


def run_label(run: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in run.items())


def versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("rlx", "jax", "jaxlib", "flax", "optax", "distrax", "gymnax", "brax", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    out["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "")
    return out


# --------------------------------------------------------------------------------------------
# loggers


def check_loggers(kinds: Sequence[str], out: Optional[str], flag: str) -> None:
    """Unknown loggers, missing packages and tensorboard without a directory: refused before compiling."""
    unknown = [k for k in kinds if k not in LOGGERS]
    check(not unknown, f"{flag}: unknown logger(s) {sorted(unknown)}; choose csv, tensorboard, wandb")
    for k in kinds:
        if LOGGERS[k] is not None:
            module, extra = LOGGERS[k]
            check(importlib.util.find_spec(module) is not None,
                  f"{flag} {k} needs the {module} package, which is not installed: pip install 'rlx[{extra}]'")
    check("tensorboard" not in kinds or out is not None, f"{flag} tensorboard needs an output directory")


class Loggers:
    def __init__(self, kinds: Sequence[str], out: Optional[str], name: str, config: dict, resume: bool):
        self.tb = self.wandb = None
        if "tensorboard" in kinds:
            from tensorboardX import SummaryWriter

            self.tb = SummaryWriter(os.path.join(out, "tb"))
        if "wandb" in kinds:
            import wandb

            self.wandb = wandb.init(project="rlx", name=f"{name}-{config.get('env')}", config=config, dir=out,
                                    resume="allow" if resume else None)

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
# the learning curve


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
                mean.append(np.nan), lo.append(np.nan), hi.append(np.nan)
                continue
            a, b = bootstrap_ci(v, np.mean, n_boot=500)
            mean.append(v.mean()), lo.append(a), hi.append(b)
        ax.plot(xs, mean, label=", ".join(f"{k}={v}" for k, v in key) or None)
        ax.fill_between(xs, lo, hi, alpha=0.25)
    ax.set_xlabel("env steps (per seed)")
    ax.set_ylabel("episode return (training)")
    ax.set_title(title)
    if any(k for k in groups):
        ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = f"{path}.tmp{os.getpid()}.png"
    try:
        fig.savefig(tmp, dpi=100)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def try_plot(path: str, rows: List[dict], sweep: dict, title: str, label: str) -> None:
    try:
        plot_curve(path, rows, sweep, title)
    except Exception as e:  # a plot failure must not lose the run
        print(f"{label} could not draw {path}: {e}", file=sys.stderr)
