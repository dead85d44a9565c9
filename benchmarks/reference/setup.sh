#!/bin/bash
# Build the environment that runs PureJaxRL / purejaxql outside rlx (nothing of theirs is committed).
#   RLX_REF=/tmp/ref bash benchmarks/reference/setup.sh
# then put copies of the reference repositories' code at
#   $RLX_REF/purejaxrl   (luchris429/purejaxrl, commit 31756b1: its purejaxrl/ folder)
#   $RLX_REF/purejaxql   (mttga/purejaxql, commit 47af6d7: its purejaxql/ folder, with config/ and utils/)
# They need the old gymnax step API (gymnax 0.0.8), and jax 0.9.2: jax 0.10.2 hung on their
# vmapped multi-seed runs on a 2-core CPU.
set -euo pipefail
REF="${RLX_REF:-/tmp/ref}"
mkdir -p "$REF"
python3.11 -m venv "$REF/venv"
"$REF/venv/bin/pip" install -q "jax==0.9.2" "jaxlib==0.9.2" "flax==0.12.6" optax distrax chex numpy pyyaml gymnasium matplotlib seaborn
"$REF/venv/bin/pip" install -q --no-deps --target "$REF/gymnax008" "gymnax==0.0.8"
echo "reference environment ready in $REF"
