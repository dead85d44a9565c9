"""Helpers for stub modules: an object that accepts any call / attribute and does nothing."""


class Anything:
    def __init__(self, *a, **k):
        pass

    def __call__(self, *a, **k):
        return Anything()

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return Anything()

    def __bool__(self):
        return False


def module_getattr(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return Anything()
