"""Stub of safetensors.flax (saving params is not needed for benchmarks)."""


def load_file(*a, **k):
    raise NotImplementedError("safetensors is stubbed in benchmarks/reference/stubs")


def save_file(*a, **k):
    raise NotImplementedError("safetensors is stubbed in benchmarks/reference/stubs")
