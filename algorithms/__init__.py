"""rlx algorithms: one self-contained file each (run them as scripts or `python -m rlx.algorithms.NAME`)."""
