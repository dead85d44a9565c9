"""Stub of navix (MiniGrid in JAX): importable, unusable."""
from _anything import module_getattr as __getattr__  # noqa
