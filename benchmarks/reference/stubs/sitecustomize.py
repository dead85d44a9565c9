"""Loaded at interpreter start when benchmarks/reference/stubs is on PYTHONPATH: restore jax aliases that
the reference code still uses but new jax removed."""
try:
    import jax
    import jax.tree_util as _tu

    for _old, _new in [("tree_map", _tu.tree_map), ("tree_leaves", _tu.tree_leaves),
                       ("tree_flatten", _tu.tree_flatten), ("tree_unflatten", _tu.tree_unflatten),
                       ("tree_structure", _tu.tree_structure)]:
        if not hasattr(jax, _old):
            setattr(jax, _old, _new)
except Exception:  # never break interpreter start
    pass
