#!/bin/bash
# Reproduce the XLA:CPU deadlock that rlx/xla_guard.py avoids, and show the guard's flag stops it.
#
# Runs PureJaxRL's ppo.py (from the reference copy set up by benchmarks/reference/setup.sh,
# gymnax 0.0.8 on PYTHONPATH) vmapped over SEEDS seeds with jax 0.10.2, TRIALS times without and
# TRIALS times with --xla_cpu_enable_concurrency_optimized_scheduler=false, each under a time
# limit; a run that hits the limit (rc 124) is a hang (the program needs ~5 s).
#
#   PY=/path/to/venv-with-jax-0.10.2/bin/python benchmarks/xla_cpu_hang.sh [TRIALS=3] [SEEDS=4] [STEPS=100000]
set -u
TRIALS=${1:-3}; SEEDS=${2:-4}; STEPS=${3:-100000}
REF=${RLX_REF:-/tmp/ref}; PY=${PY:-python}; HERE=$(cd "$(dirname "$0")" && pwd)
export PYTHONPATH=$REF/gymnax008:$REF/stubs RLX_KEEP_XLA_FLAGS=1
echo "jax $($PY -c 'import jax; print(jax.__version__)'), $(nproc) cores, $(date -u +%FT%TZ), $SEEDS seeds x $STEPS steps"
for flags in "" "--xla_cpu_enable_concurrency_optimized_scheduler=false"; do
  for i in $(seq "$TRIALS"); do
    t0=$(date +%s)
    out=$(XLA_FLAGS="$flags" timeout 150 "$PY" "$HERE/reference/run_ref.py" "$REF/purejaxrl/ppo.py" \
          --yaml "$HERE/reference/configs/ppo_cartpole.yaml" --set TOTAL_TIMESTEPS="$STEPS" --num-seeds "$SEEDS" 2>/dev/null)
    rc=$?
    echo "XLA_FLAGS=[$flags] trial $i: rc=$rc ($(( $(date +%s) - t0 )) s) $(echo "$out" | grep -o '"run_s": [0-9.]*')"
  done
done
