"""The command line of every rlx algorithm: flags -> Config (defaults -> preset(env) -> explicit
flags), sweeps, and `main`, which an algorithm file calls in its `if __name__ == "__main__":` block:

    python algorithms/ppo.py --env CartPole-v1 --num-seeds 4 --sweep lr=1e-4,3e-4 --out runs/x

`main` asks XLA for one CPU device per core (`rlx.devices.use_all_cpu_cores`) before JAX starts its
backends, parses the flags and calls `rlx.run.run`. Bad input exits with status 2 and a message
naming the flag, before anything compiles; a run that diverges exits with status 3.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from typing import Callable, Dict, Optional, Sequence

from . import devices, rundir
from .config import ConfigError, check, is_static

RUNNER_FLAGS = ("out", "num_seeds", "seed", "log", "log_every", "eval_every", "eval_episodes", "checkpoint_every", "sweep")
FLAG_NAMES = {**{k: "--" + k.replace("_", "-") for k in RUNNER_FLAGS}, "resume": "--resume", "overwrite": "--overwrite"}


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
        raise ConfigError(f"--{name.replace('_', '-')}: cannot read {text!r} as {_type_name(fields[name])}") from None


def _type_name(f: dataclasses.Field) -> str:
    typ = _field_type(f)
    if typ is tuple:
        et = type(f.default[0]).__name__ if f.default else "int"
        return f"comma-separated {et}s (e.g. {','.join(map(str, f.default)) or '64,64'})"
    return typ.__name__


def parse_sweeps(cfg_cls, sweeps: Sequence[str]) -> Dict[str, list]:
    out: Dict[str, list] = {}
    fields = {f.name: f for f in dataclasses.fields(cfg_cls)}
    for item in sweeps or ():
        check("=" in item, f"--sweep expects FIELD=v1,v2,... (got {item!r})")
        key, vals = item.split("=", 1)
        name = key.strip().replace("-", "_")
        check(name in fields, f"--sweep: {cfg_cls.__module__} Config has no field {key!r}; fields: {', '.join(sorted(fields))}")
        check(not is_static(cfg_cls, name), f"--sweep: {key!r} sets shapes or control flow and cannot be swept in one "
                                            f"compiled program; start one run per value instead")
        typ = _field_type(fields[name])
        check(typ in (int, float, bool), f"--sweep: only numeric fields can be swept ({key!r} is {typ.__name__})")
        values = [parse_value(cfg_cls, name, v) for v in vals.split(",") if v.strip()]
        check(len(values) >= 1, f"--sweep {key}: give at least one value")
        check(name not in out, f"--sweep: {key!r} given twice")
        out[name] = values
    return out


def config_values(cfg_cls, env: Optional[str], overrides: dict, preset: Optional[Callable] = None) -> dict:
    """defaults -> preset(env) -> explicit overrides, as a dict of field values."""
    env = env or overrides.get("env") or cfg_cls().env
    values = {f.name: f.default for f in dataclasses.fields(cfg_cls) if f.default is not dataclasses.MISSING}
    values.update(preset(env) if preset else {})
    values.update(overrides)
    values["env"] = env
    return values


def build_config(cfg_cls, env: Optional[str], overrides: dict, preset: Optional[Callable] = None):
    """defaults -> preset(env) -> explicit overrides."""
    values = config_values(cfg_cls, env, overrides, preset)
    unknown = set(values) - {f.name for f in dataclasses.fields(cfg_cls)}
    check(not unknown, f"unknown config fields {sorted(unknown)}")
    return cfg_cls(**values)


# --------------------------------------------------------------------------------------------
# argparse


def _env_in(argv: Sequence[str]) -> Optional[str]:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--env")
    return p.parse_known_args(argv)[0].env


def build_parser(cfg_cls, name: str, preset: Optional[Callable] = None,
                 argv: Optional[Sequence[str]] = None) -> argparse.ArgumentParser:
    """The parser; its help shows the defaults in force for the `--env` in argv (the preset's)."""
    env = _env_in(sys.argv[1:] if argv is None else argv)
    try:
        defaults = config_values(cfg_cls, env, {}, preset)
    except Exception:  # a preset that rejects the env: the error comes later, with the run
        defaults = config_values(cfg_cls, None, {}, None)
    from_preset = set(preset(defaults["env"])) if preset and defaults["env"] else set()
    p = argparse.ArgumentParser(prog=f"python algorithms/{name}.py",
                                description=(sys.modules[cfg_cls.__module__].__doc__ or "").strip().split("\n")[0],
                                argument_default=argparse.SUPPRESS)
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, help="seed of the first run (default 0); run i of --num-seeds uses "
                                            "jax.random.PRNGKey(seed + i)")
    g.add_argument("--num-seeds", type=int, help="independent seeds trained side by side (default 1)")
    g.add_argument("--sweep", action="append", metavar="FIELD=v1,v2",
                   help="sweep a Config field; several allowed: all combinations x seeds run in one program")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/<algorithm>/<env>/<time>)")
    g.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    g.add_argument("--resume", metavar="DIR", help="continue the run in DIR (settings are read from DIR/config.json)")
    g.add_argument("--log", metavar="csv,tensorboard,wandb", help="comma-separated loggers: csv (always), tensorboard, wandb")
    g.add_argument("--log-every", type=int, metavar="STEPS", help="env steps per seed between log points (>= 1; default total/50)")
    g.add_argument("--eval-every", type=int, metavar="STEPS", help="env steps between evaluations (>= 0; default 0: at the end only)")
    g.add_argument("--eval-episodes", type=int, metavar="N",
                   help="episodes per evaluation (>= 0; default: the algorithm's, e.g. 16 for PPO, 128 for PQN; 0 disables)")
    g.add_argument("--checkpoint-every", type=int, metavar="STEPS",
                   help="env steps between checkpoints (>= 1; default: after the first chunk, then every 60 s, and at the end)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, help="print a progress line per chunk (default on)")
    title = "config (defaults"
    title += f" for --env {defaults['env']}, with its preset marked [preset])" if from_preset else ")"
    c = p.add_argument_group(title)
    for f in dataclasses.fields(cfg_cls):
        flag = "--" + f.name.replace("_", "-")
        typ = _field_type(f)
        hlp = f.metadata.get("help", "")
        if f.metadata.get("choices"):
            hlp += f"; one of {', '.join(map(str, f.metadata['choices']))}"
        if f.metadata.get("within"):
            hlp += f"; in {f.metadata['within']}" + (" (each)" if typ is tuple else "")
        default = defaults.get(f.name)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        hlp += f" (default {shown}{' [preset]' if f.name in from_preset else ''})"
        if f.metadata.get("static"):
            hlp += " [static: cannot be swept]"
        hlp = hlp.replace("%", "%%")
        if typ is bool:
            c.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, help=hlp)
        elif typ is tuple:
            et = (type(f.default[0]).__name__ if f.default else "int").upper()
            c.add_argument(flag, dest=f.name, metavar=f"{et},{et},...", help=hlp)
        else:
            c.add_argument(flag, dest=f.name, metavar=typ.__name__.upper(), help=hlp)
    return p


def main(cfg_cls, make_train: Callable, name: str, preset: Optional[Callable] = None,
         argv: Optional[Sequence[str]] = None):
    """Run the algorithm from the command line (exit 2: bad input, 3: training diverged)."""
    if not devices.backends_started():  # one CPU device per core and the scheduler guard (rlx/devices.py)
        devices.use_all_cpu_cores()
    args = vars(build_parser(cfg_cls, name, preset, argv).parse_args(argv))
    from .run import NonFiniteError  # after the flags: --help does not need the runner

    try:
        return _main(cfg_cls, make_train, name, preset, args)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except NonFiniteError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(3)


def _main(cfg_cls, make_train, name, preset, args: dict):
    from .run import run

    field_names = {f.name for f in dataclasses.fields(cfg_cls)}
    overrides = {k: (v if isinstance(v, bool) else parse_value(cfg_cls, k, v)) for k, v in args.items() if k in field_names}
    flags = {k: v for k, v in args.items() if k not in field_names}
    resume = flags.pop("resume", None)
    if resume:
        check(flags.get("out", resume) == resume, "--resume DIR writes to DIR; drop --out")
        check(not flags.get("overwrite"), "--resume continues a run and --overwrite replaces it: give one of them")
        saved = rundir.read_json(os.path.join(resume, rundir.CONFIG), f"; is {resume} an rlx run directory?")
        cfg_path = os.path.join(resume, rundir.CONFIG)
        check(saved.get("algorithm") == name, f"--resume {resume}: that run is {saved.get('algorithm')!r}, not {name!r}")
        try:
            saved_cfg = {k: (tuple(v) if isinstance(v, list) else v) for k, v in saved["config"].items()}
            cfg = cfg_cls(**{**saved_cfg, **overrides})  # differences are reported by rlx.rundir.prepare
            sweep = parse_sweeps(cfg_cls, flags["sweep"]) if "sweep" in flags else \
                {k: list(v) for k, v in saved["sweep"].items()}
            kw = {k: flags.get(k, saved[k]) for k in ("num_seeds", "seed", "log_every", "eval_every", "eval_episodes")}
        except (KeyError, TypeError, AttributeError) as e:
            raise ConfigError(f"{cfg_path} does not describe a {name} run ({type(e).__name__}: {e}); "
                              f"it is damaged or from another version") from None
        kw.update(out=resume, resume=True)
    else:
        cfg = build_config(cfg_cls, overrides.pop("env", None), overrides, preset)
        sweep = parse_sweeps(cfg_cls, flags.get("sweep", []))
        out = flags.get("out") or os.path.join("runs", name, cfg.env.replace("/", "_"), time.strftime("%Y%m%d-%H%M%S"))
        kw = dict(num_seeds=flags.get("num_seeds", 1), seed=flags.get("seed", 0), log_every=flags.get("log_every"),
                  eval_every=flags.get("eval_every", 0), eval_episodes=flags.get("eval_episodes"), out=out,
                  resume=False, overwrite=flags.get("overwrite", False))
    logs = tuple(x.strip() for x in flags.get("log", "csv").split(",") if x.strip())
    return run(cfg_cls, make_train, cfg, name=name, sweep=sweep, log=logs, checkpoint_every=flags.get("checkpoint_every"),
               progress=flags.get("progress", True), names=FLAG_NAMES, **kw)
