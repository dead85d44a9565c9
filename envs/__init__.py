"""Environment registry: `make(name)` for gymnax ids, `brax/<name>` and rlx's own envs;
`make_from_config(config)` for an algorithm's Config (its `env` plus the brax options).

See `envs.core` for the API every env follows.
"""
from __future__ import annotations

import difflib
from typing import Callable, Dict

from . import spaces
from .brax_env import AUTORESETS as BRAX_AUTORESETS
from .brax_env import BACKENDS as BRAX_BACKENDS
from .core import Env, EpisodeStats, State

GYMNAX_IDS = (
    "CartPole-v1", "Pendulum-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0",
    "Asterix-MinAtar", "Breakout-MinAtar", "Freeway-MinAtar", "Seaquest-MinAtar", "SpaceInvaders-MinAtar",
    "Catch-bsuite", "DeepSea-bsuite", "MemoryChain-bsuite", "UmbrellaChain-bsuite", "DiscountingChain-bsuite",
    "MNISTBandit-bsuite", "SimpleBandit-bsuite", "FourRooms-misc", "MetaMaze-misc", "PointRobot-misc",
    "BernoulliBandit-misc", "GaussianBandit-misc", "Reacher-misc", "Swimmer-misc", "Pong-misc", "FrozenLake-misc",
)
BRAX_IDS = (
    "ant", "halfcheetah", "hopper", "humanoid", "humanoidstandup", "inverted_pendulum",
    "inverted_double_pendulum", "pusher", "reacher", "swimmer", "walker2d",
)

# rlx's own environments register here: name -> constructor(**kwargs) -> Env
_REGISTRY: Dict[str, Callable[..., Env]] = {}


def register(name: str, constructor: Callable[..., Env]) -> None:
    """Register an environment constructor under `name` (overwrites silently)."""
    _REGISTRY[name] = constructor


def names() -> list:
    """Every name `make` accepts."""
    return sorted(list(GYMNAX_IDS) + [f"brax/{n}" for n in BRAX_IDS] + list(_REGISTRY))


def make(name: str, **kwargs) -> Env:
    """Make an env by name. brax envs take `backend=` ("spring" by default), `episode_length=`
    and `autoreset=` ("fresh" by default, or "cached": see `envs/brax_env.py`); gymnax envs take
    `params={...}` (fields of gymnax's EnvParams, e.g. `make("MemoryChain-bsuite",
    params={"memory_length": 100})`) and gymnax's constructor keywords."""
    if name in _REGISTRY:
        return _REGISTRY[name](**kwargs)
    if name in GYMNAX_IDS:
        from .gymnax_env import GymnaxEnv

        return GymnaxEnv(name, **kwargs)
    if name.startswith("brax/") and name[5:] in BRAX_IDS:
        from .brax_env import BraxEnv

        return BraxEnv(name[5:], **kwargs)
    close = difflib.get_close_matches(name, names(), n=4, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown environment {name!r}.{hint} `python -c 'import rlx.envs; print(rlx.envs.names())'` lists all.")


AUTO = "auto"  # a brax option left to the env's default (backend "spring", autoreset "fresh")
ENV_BACKEND_CHOICES = (AUTO,) + BRAX_BACKENDS  # `choices=` of an algorithm's `env_backend` field
ENV_AUTORESET_CHOICES = (AUTO,) + BRAX_AUTORESETS  # `choices=` of `env_autoreset`


def make_from_config(config) -> Env:
    """The env an algorithm's Config names: `config.env`, with the brax options of the Config's
    `env_backend` / `env_autoreset` fields where it has them ("auto": the env's default). Setting
    either to anything but "auto" for a non-brax env raises ValueError (naming the flag), rather
    than being silently ignored."""
    from rlx.config import flag

    name = config.env
    kwargs = {}
    for field_name, key in (("env_backend", "backend"), ("env_autoreset", "autoreset")):
        value = getattr(config, field_name, AUTO)
        if value != AUTO:
            kwargs[key] = value
    if kwargs and not name.startswith("brax/"):
        if name not in names():
            make(name)  # an unknown name: its own error, with close matches
        set_flags = [f"{flag(f)} {getattr(config, f)}" for f in ("env_backend", "env_autoreset")
                     if getattr(config, f, AUTO) != AUTO]
        one = len(set_flags) == 1
        raise ValueError(f"{' and '.join(set_flags)} only appl{'ies' if one else 'y'} to brax envs (brax/<name>); "
                         f"{name} is not one: drop the flag{'' if one else 's'} (or pass '{AUTO}')")
    return make(name, **kwargs)


def _register_builtin():
    # our own JAX envs (each module calls `register` on import)
    import importlib

    for mod in ("lot_sizing", "frozen_lake"):
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except ModuleNotFoundError as e:  # module not written yet
            if e.name != f"{__name__}.{mod}":
                raise


_register_builtin()

__all__ = ["make", "make_from_config", "names", "register", "Env", "State", "EpisodeStats", "spaces",
           "BRAX_BACKENDS", "BRAX_AUTORESETS", "ENV_BACKEND_CHOICES", "ENV_AUTORESET_CHOICES"]
