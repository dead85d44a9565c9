"""gymnax environments behind the rlx env API (gymnax 1.x already auto-resets and reports
`terminated`, `truncated` and `final_observation`)."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from . import spaces
from .core import Env


def _convert_space(space):
    from gymnax.environments import spaces as gs

    if isinstance(space, gs.Discrete):
        return spaces.Discrete(int(space.n))
    if isinstance(space, gs.Box):
        shape = tuple(int(s) for s in space.shape)
        low = np.broadcast_to(np.asarray(space.low, np.float32), shape)
        high = np.broadcast_to(np.asarray(space.high, np.float32), shape)
        return spaces.Box(low, high, shape)
    raise TypeError(f"gymnax space {space!r} is not supported by rlx")


class GymnaxEnv(Env):
    def __init__(self, name: str, params: dict | None = None, **env_kwargs):
        """`params` overrides fields of gymnax's EnvParams (e.g. MemoryChain's `memory_length`);
        `env_kwargs` go to the gymnax env constructor."""
        import dataclasses

        import gymnax

        self.name = name
        self._env, self._params = gymnax.make(name, **env_kwargs)
        if params:
            fields = {f.name for f in dataclasses.fields(self._params)}
            unknown = sorted(set(params) - fields)
            if unknown:
                raise ValueError(f"{name} has no env parameter(s) {unknown}; its EnvParams fields are {sorted(fields)}")
            self._params = self._params.replace(**params)
        self.max_episode_steps = int(getattr(self._params, "max_steps_in_episode", 0))
        with jax.ensure_compile_time_eval():  # make() may run while a sweep is being traced
            self.observation_space = _convert_space(self._env.observation_space(self._params))
            self.action_space = _convert_space(self._env.action_space(self._params))
        self._bounds = None
        if isinstance(self.action_space, spaces.Box):
            self._bounds = (jnp.asarray(self.action_space.low_array()), jnp.asarray(self.action_space.high_array()))

    def _reset(self, key):
        obs, state = self._env.reset(key, self._params)
        return jnp.asarray(obs, jnp.float32), state

    def _step(self, key, state, action):
        if self._bounds is not None:  # continuous actions are clipped to the bounds inside the env
            action = jnp.clip(action, *self._bounds)
        obs, state, reward, terminated, truncated, info = self._env.step(key, state, action, self._params)
        final_obs = jnp.asarray(info["final_observation"], jnp.float32)
        return jnp.asarray(obs, jnp.float32), state, reward, terminated, truncated, final_obs, {}
