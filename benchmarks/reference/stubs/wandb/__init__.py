"""Stub of wandb: every call is a no-op (keep WANDB_MODE="disabled" anyway)."""
from _anything import module_getattr as __getattr__  # noqa


def init(*a, **k):
    return None


def log(*a, **k):
    return None
