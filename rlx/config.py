"""Config helpers shared by every algorithm's frozen `Config` dataclass.

- `static(default)` marks a field that sets shapes or Python control flow (env counts,
  network sizes, number of updates...): it cannot be swept with `--sweep`.
- `with_values(cfg, **vals)` replaces fields without running validation, so the runner can
  put traced arrays into swept fields inside `jax.vmap`.
- `check(cond, msg)` raises a ConfigError with a message that says what to do.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any


class ConfigError(ValueError):
    """Bad user input, reported before anything compiles."""


def static(default: Any, help: str = "") -> Any:
    return dataclasses.field(default=default, metadata={"static": True, "help": help})


def field(default: Any, help: str = "") -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


def is_static(cfg_cls, name: str) -> bool:
    f = {f.name: f for f in dataclasses.fields(cfg_cls)}[name]
    return bool(f.metadata.get("static", False))


def with_values(cfg, **vals):
    new = copy.copy(cfg)
    for k, v in vals.items():
        object.__setattr__(new, k, v)
    return new


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def to_dict(cfg) -> dict:
    out = {}
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        out[f.name] = list(v) if isinstance(v, tuple) else v
    return out
