"""Stub of hydra: @hydra.main(...) returns the function unchanged (never used by make_train)."""
from _anything import module_getattr as __getattr__  # noqa


def main(*a, **k):
    return lambda f: f
