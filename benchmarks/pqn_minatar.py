"""PQN on the five MinAtar games at the reference budget (purejaxql's `pqn_minatar` preset, 1e7 env
steps per seed): trains each game through the rlx command line and writes a table of the returns.

    python benchmarks/pqn_minatar.py --runs runs/pqn_minatar --parallel 2 \\
        --out benchmarks/results/raw/pqn_minatar-<date>.md

Each game gets its own run directory `<runs>/<Game>`. A game whose directory already holds a
`summary.json` is only read; one with a checkpoint but no summary (a run that was stopped) is
continued with `--resume`, so the command can be stopped and started again until every game is done.
`--parallel N` trains N games at a time, each pinned to its own core with `taskset` where there is
one (one seed keeps one core busy: see benchmarks/results/pqn.md). `--collect` only writes the table
from what the run directories hold, marking unfinished games with the steps they reached.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import queue
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from rlx.run import CHECKPOINT

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GAMES = ["Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders"]


def command(game, a):
    run_dir = os.path.join(a.runs, game)
    if os.path.exists(os.path.join(run_dir, CHECKPOINT)):  # a stopped run: go on from its checkpoint
        return [sys.executable, os.path.join(ROOT, "algorithms", "pqn.py"), "--resume", run_dir, "--no-progress"]
    return [sys.executable, os.path.join(ROOT, "algorithms", "pqn.py"), "--env", f"{game}-MinAtar",
            "--num-seeds", str(a.seeds), "--seed", str(a.seed), "--total-timesteps", str(int(a.steps)),
            "--eval-every", str(int(a.eval_every)), "--eval-episodes", str(a.eval_episodes),
            "--out", run_dir, "--no-progress"]


def train(game, core, a):
    cmd = command(game, a)
    if core is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(core)] + cmd
    t0 = time.time()
    with open(os.path.join(a.runs, f"{game}.log"), "a") as log:
        rc = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT)
    print(f"{game}: exit {rc} after {time.time() - t0:.0f} s ({' '.join(cmd)})", flush=True)
    return rc


def read_game(game, a):
    run_dir = os.path.join(a.runs, game)
    row = dict(game=game, done=False, steps=0, seeds=None, evals=[], train=float("nan"))
    if os.path.exists(os.path.join(run_dir, "metrics.csv")):
        with open(os.path.join(run_dir, "metrics.csv")) as f:
            rows = list(csv.DictReader(f))
        by_step = {}
        for r in rows:
            by_step.setdefault(int(r["env_steps"]), []).append(r)
        if by_step:
            row["steps"] = max(by_step)
            last = by_step[row["steps"]]
            row["train"] = sum(float(r["episode_return"]) for r in last) / len(last)
            for step in sorted(by_step):
                ev = [float(r["eval_return"]) for r in by_step[step] if r.get("eval_return") not in (None, "", "nan")]
                if ev:
                    row["evals"].append((step, sum(ev) / len(ev)))
    path = os.path.join(run_dir, "summary.json")
    if os.path.exists(path):
        with open(path) as f:
            s = json.load(f)
        row.update(done=True, steps=s["env_steps"], seeds=s["num_seeds"], final=s["final_return"],
                   mean=s["final_return_mean"], ci=s["final_return_ci95"], train5=s["train_return_last5pct"],
                   wall_s=s["wall_s"], sps=s["env_steps_per_s"], device=s["device"], versions=s["versions"])
    return row


def fmt(x, d=1):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def table(rows, a):
    lines = ["| game | seeds | env steps per seed | final greedy return (mean, per seed) | 95% CI | "
             "train return, last 5% of updates | train wall s | env steps/s | greedy return at each evaluation (M steps: return) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        curve = ", ".join(f"{s / 1e6:.3g}: {v:.1f}" for s, v in r["evals"])
        if r["done"]:
            per_seed = ", ".join(fmt(x) for x in r["final"])
            train5 = ", ".join(fmt(x) for x in r["train5"])
            lines.append(f"| {r['game']} | {r['seeds']} | {r['steps']:,} | **{fmt(r['mean'])}** ({per_seed}) | "
                         f"[{fmt(r['ci'][0])}, {fmt(r['ci'][1])}] | {train5} | {r['wall_s']:.0f} | {r['sps']:,.0f} | {curve} |")
        else:
            if r["steps"]:
                state, train = f"unfinished: {r['steps']:,} of {int(a.steps):,}", f"{fmt(r['train'])} (latest log point)"
            else:
                state, train = "not run", "-"
            lines.append(f"| {r['game']} | {a.seeds} | {state} | - | - | {train} | - | - | {curve} |")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--games", nargs="+", default=GAMES, choices=GAMES)
    p.add_argument("--steps", type=float, default=1e7, help="env steps per seed (reference: 1e7)")
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=float, default=1e6)
    p.add_argument("--eval-episodes", type=int, default=128)
    p.add_argument("--runs", default="runs/pqn_minatar", help="one run directory per game below this")
    p.add_argument("--parallel", type=int, default=1, help="games trained at a time, one core each")
    p.add_argument("--collect", action="store_true", help="only write the table from the run directories")
    p.add_argument("--out", default=None, help="markdown file for the table (default: print only)")
    a = p.parse_args()
    if a.parallel < 1:
        p.error("--parallel must be >= 1")
    os.makedirs(a.runs, exist_ok=True)

    if not a.collect:
        todo = [g for g in a.games if not os.path.exists(os.path.join(a.runs, g, "summary.json"))]
        cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        pin = a.parallel > 1 and len(cores) >= a.parallel
        free = queue.Queue()  # each game borrows a core for its whole run
        for c in (cores[:a.parallel] if pin else [None] * a.parallel):
            free.put(c)

        def job(g):
            core = free.get()
            try:
                return train(g, core, a)
            finally:
                free.put(core)

        with ThreadPoolExecutor(a.parallel) as pool:
            codes = list(pool.map(job, todo))
        failed = [g for g, rc in zip(todo, codes) if rc != 0]
        if failed:
            print(f"failed: {failed} (logs in {a.runs}/<game>.log)", file=sys.stderr)

    rows = [read_game(g, a) for g in a.games]
    text = table(rows, a)
    print(text)
    if a.out:
        done = [r for r in rows if r["done"]]
        head = f"Command: `python benchmarks/pqn_minatar.py {' '.join(sys.argv[1:])}`\n\n"
        if done:
            head += f"Device: {done[0]['device']}; versions: {json.dumps(done[0]['versions'])}\n\n"
        with open(a.out + ".tmp", "w") as f:
            f.write(head + text + "\n")
        os.replace(a.out + ".tmp", a.out)


if __name__ == "__main__":
    main()
