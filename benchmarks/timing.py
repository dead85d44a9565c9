"""How every benchmark here times a program: compile ahead of time, then one call until
`block_until_ready`, each in wall and process-CPU seconds (a shared machine shows in the CPU figure)."""
import time

import jax


def compile_and_run(fn, *args):
    """`jax.jit(fn)` compiled for `args`, then called once. Returns (output, times) with times =
    dict(compile_s, compile_cpu_s, run_s, run_cpu_s)."""
    t0, c0 = time.perf_counter(), time.process_time()
    compiled = jax.jit(fn).lower(*args).compile()
    times = dict(compile_s=time.perf_counter() - t0, compile_cpu_s=time.process_time() - c0)
    t0, c0 = time.perf_counter(), time.process_time()
    out = jax.block_until_ready(compiled(*args))
    times.update(run_s=time.perf_counter() - t0, run_cpu_s=time.process_time() - c0)
    return out, times
