"""The compiled programs of a run (init, one chunk program per chunk size, evaluation) and the
memory check: what XLA says the programs allocate, against the memory available, before anything
is allocated."""
from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import devices as dv
from . import report
from .config import ConfigError, with_values
from .plan import Plan

MEMORY_FRACTION = 0.9  # of the available memory a run may plan to use
SWEEP_ERRORS = (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError,
                jax.errors.TracerArrayConversionError)


class Programs:
    """The compiled init, chunk (one per chunk size) and eval programs, and their memory needs."""

    def __init__(self, make_train, config, base, plan: Plan, sweep):
        self.plan, self.sweep, self.base = plan, sweep, base
        self.train_of = lambda hpv: make_train(with_values(config, **hpv)) if hpv else base
        self.compile_s = 0.0
        self.chunk: Dict[int, Any] = {}
        self.init = self.eval = None
        if len(plan.devices) > 1:
            self.shard = dv.runs_sharding(plan.devices)
            self.jit_kw = dict(in_shardings=self.shard, out_shardings=self.shard)
            self.eval_kw = dict(in_shardings=(self.shard, self.shard, dv.replicated(self.shard)),
                                out_shardings=self.shard)
            plan.keys, plan.hp = jax.device_put(plan.keys, self.shard), jax.device_put(plan.hp, self.shard)
        else:
            self.shard, self.jit_kw, self.eval_kw = None, {}, {}

    def init_one(self, key, hpv):
        return self.train_of(hpv).init(key)

    def state_shape(self, n: Optional[int] = None):
        keys, hp = self.plan.keys, self.plan.hp
        if n is not None:
            keys, hp = keys[:n], {k: v[:n] for k, v in hp.items()}
        return self._timed(lambda: jax.eval_shape(jax.vmap(self.init_one), keys, hp), count=False)

    def _timed(self, f, count=True):
        t0 = time.perf_counter()
        try:
            return f()
        except SWEEP_ERRORS as e:
            raise ConfigError(f"a swept field ({', '.join(self.sweep)}) is used for shapes or Python control flow in "
                              f"make_train and cannot be swept: {e}") from None
        finally:
            self.compile_s += (time.perf_counter() - t0) * count

    def compile(self, chunks: List[int], with_init: bool):
        p, shape = self.plan, self.state_shape()
        if with_init:
            self.init = self._timed(lambda: jax.jit(jax.vmap(self.init_one), **self.jit_kw).lower(p.keys, p.hp).compile())

        def chunk_one(state, hpv, n):
            t = self.train_of(hpv)
            state, ms = jax.lax.scan(lambda s, _: t.update(s), state, None, n)
            leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
            finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in leaves])) if leaves else jnp.asarray(True)
            return state, ms, finite

        donate = dv.donate_argnums(shape, p.devices)
        for n in sorted(set(chunks)):  # every chunk size before the clock starts
            f = jax.jit(jax.vmap(lambda s, h, n=n: chunk_one(s, h, n)), donate_argnums=donate, **self.jit_kw)
            self.chunk[n] = self._timed(lambda: f.lower(shape, p.hp).compile())
        if p.has_eval:
            def eval_all(state, hpv, key):
                ks = jax.random.split(key, p.n_runs + p.n_pad)
                return jax.vmap(lambda s, h, k: self.train_of(h).evaluate(s, k, p.eval_episodes))(state, hpv, ks)

            self.eval = self._timed(lambda: jax.jit(eval_all, **self.eval_kw).lower(
                shape, p.hp, jax.random.PRNGKey(0)).compile())

    def state_bytes(self) -> int:
        return sum(math.prod(x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(self.state_shape()))


def check_memory(progs: Programs, plan: Plan, num_seeds: int, n_combos: int, nm: dict) -> dict:
    """Peak bytes of the compiled programs (arguments + outputs - donated + temporaries, as XLA reports
    them), plus the host copy of the state a checkpoint makes on a CPU, against the available memory."""
    peaks, code = [], 0
    for c in [progs.init, progs.eval, *progs.chunk.values()]:
        m = dv.program_bytes(c) if c is not None else None
        if m is not None:
            peaks.append(m["argument"] + m["output"] - m["alias"] + m["temp"])
            code += m["code"]
    if not peaks:
        return {}
    cpu = plan.devices[0].platform == "cpu"
    state = progs.state_bytes()
    n_dev = len(plan.devices)
    # the programs' sizes are per device: every device holds (runs + padding) / devices runs
    estimate = max(peaks) * n_dev + (state if cpu else 0) + code
    avail = dv.available_memory(plan.devices[0]) * (1 if cpu else n_dev)
    mem = {"estimate_bytes": int(estimate), "available_bytes": int(avail)}
    budget = MEMORY_FRACTION * avail
    if estimate > budget:
        per_run = (estimate - code) / (plan.n_runs + plan.n_pad)
        fit_runs = int((budget - code) // per_run) if per_run > 0 else 0
        fit_seeds = fit_runs // n_combos
        raise ConfigError(
            f"this run needs about {report.fmt_bytes(estimate)} ({plan.n_runs} runs x {report.fmt_bytes(per_run)}"
            + (f" + {report.fmt_bytes(code)} of code" if code else "") + ", as XLA compiled it) but"
            f" {report.fmt_bytes(avail)} is available "
            f"({MEMORY_FRACTION:.0%} may be used): run at most {fit_seeds} seed(s)"
            + (f" with {n_combos} sweep settings" if n_combos > 1 else "")
            + f" ({nm['num_seeds']}{' ' if nm['num_seeds'].startswith('--') else '='}{fit_seeds}), or shrink the state (e.g. a smaller buffer, fewer envs)")
    return mem


