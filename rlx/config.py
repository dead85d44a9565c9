"""Config fields shared by every algorithm's frozen `Config` dataclass.

A field states its help text, its allowed range and (for strings) its choices next to its
default, once:

    gamma: float = field(0.99, "discount", within="[0, 1]")
    lr: float = field(2.5e-4, "Adam learning rate", within="(0, inf)")
    num_envs: int = static(4, "parallel envs per seed", within="[1, inf)")
    activation: str = static("tanh", "hidden activation", choices=ACTIVATIONS)

- `within` is an interval in the usual notation: `[` / `]` include the bound, `(` / `)` exclude
  it, `inf` means unbounded. For a tuple field (e.g. `hidden`) it applies to every element.
- `static(...)` marks a field that sets shapes or Python control flow (env counts, network
  sizes, number of updates, string choices...). The runner never sweeps it, so inside
  `make_train` it is always a plain Python value.
- `field(...)` marks a sweepable field. **Sweep contract**: inside `make_train` a `field()` may
  arrive as a traced JAX scalar (the runner re-runs `make_train` under `jax.vmap` with the swept
  values), so code must use it only in arithmetic or `jnp.where`/`lax` control flow, never in a
  Python `if`, a shape or a Python `int(...)`. A field that cannot honour this is `static`.
- `check_fields(cfg)` turns every range/choice violation into a `ConfigError` with the usual
  message ("--gamma must be in [0, 1] (got 1.5)"); `validate(cfg)` runs it and then the
  algorithm's own `cfg.validate()`, which keeps only checks that relate several fields.
- `with_values(cfg, **vals)` replaces fields without validation, so the runner can put traced
  arrays into swept fields inside `jax.vmap`; `check(cond, msg)` raises a ConfigError.
"""
from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Optional, Sequence, Tuple


class ConfigError(ValueError):
    """Bad user input, reported before anything compiles."""


def _interval(text: str) -> Tuple[float, float, bool, bool]:
    """Parse "[0, 1)" into (lo, hi, lo_closed, hi_closed)."""
    t = text.strip()
    if len(t) < 5 or t[0] not in "[(" or t[-1] not in "])" or "," not in t:
        raise ValueError(f"within={text!r}: write an interval such as '[0, 1]', '(0, inf)' or '[1, inf)'")
    lo, hi = (s.strip() for s in t[1:-1].split(","))
    return float(lo), float(hi), t[0] == "[", t[-1] == "]"


def _meta(help: str, static: bool, within: Optional[str], choices: Optional[Sequence]) -> dict:
    if within is not None:
        _interval(within)  # fail at class definition on a malformed interval
    return {"help": help, "static": static, "within": within, "choices": tuple(choices) if choices is not None else None}


def field(default: Any, help: str = "", *, within: Optional[str] = None, choices: Optional[Sequence] = None) -> Any:
    """A sweepable field (may be a tracer inside `make_train`: see the sweep contract above)."""
    return dataclasses.field(default=default, metadata=_meta(help, False, within, choices))


def static(default: Any, help: str = "", *, within: Optional[str] = None, choices: Optional[Sequence] = None) -> Any:
    """A field that sets shapes or Python control flow: always a Python value, never swept."""
    return dataclasses.field(default=default, metadata=_meta(help, True, within, choices))


def is_static(cfg_cls, name: str) -> bool:
    f = {f.name: f for f in dataclasses.fields(cfg_cls)}[name]
    return bool(f.metadata.get("static", False))


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def in_interval(value: float, within: str) -> bool:
    lo, hi, lo_c, hi_c = _interval(within)
    if isinstance(value, float) and math.isnan(value):
        return False
    return (value >= lo if lo_c else value > lo) and (value <= hi if hi_c else value < hi)


def check_field(cfg_cls, name: str, value: Any) -> None:
    """Check one value against the declared range/choices of field `name` (tracers pass)."""
    meta = {f.name: f for f in dataclasses.fields(cfg_cls)}[name].metadata
    choices, within = meta.get("choices"), meta.get("within")
    if choices is not None:
        check(value in choices, f"{flag(name)} must be one of {', '.join(map(str, choices))} (got {value!r})")
    if within is not None:
        if isinstance(value, (tuple, list)):
            check(len(value) >= 1, f"{flag(name)} needs at least one value (got an empty list)")
        for v in (value if isinstance(value, (tuple, list)) else (value,)):
            if isinstance(v, (bool, int, float)):
                check(in_interval(v, within), f"{flag(name)} must be in {within} (got {value!r})")


def check_fields(cfg) -> None:
    """Every field's declared range and choices; raises ConfigError naming the flag."""
    for f in dataclasses.fields(cfg):
        check_field(type(cfg), f.name, getattr(cfg, f.name))


def validate(cfg) -> None:
    """Declared ranges/choices first, then the algorithm's cross-field `validate()` if it has one.
    ValueError/TypeError from inside validate() (e.g. an unknown env from `envs.make`) become ConfigError."""
    check_fields(cfg)
    try:
        if hasattr(cfg, "validate"):
            cfg.validate()
    except ConfigError:
        raise
    except (ValueError, TypeError) as e:
        raise ConfigError(str(e)) from None


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
