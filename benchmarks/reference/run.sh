#!/bin/bash
# Run a reference script's make_train in the reference environment built by setup.sh
# (jax 0.9.2, gymnax 0.0.8 first on the path, stubs for hydra/omegaconf/wandb/...).
HERE="$(cd "$(dirname "$0")" && pwd)"
REF="${RLX_REF:-/tmp/ref}"
export PYTHONPATH="$REF/gymnax008:$HERE/stubs${EXTRA_PYTHONPATH:+:$EXTRA_PYTHONPATH}"
cd "$REF" && exec "$REF/venv/bin/python" "$HERE/run_ref.py" "$@"
