"""Stub of flashbax: importable, unusable (PureJaxRL dqn.py needs the real package)."""
from _anything import module_getattr as __getattr__  # noqa
