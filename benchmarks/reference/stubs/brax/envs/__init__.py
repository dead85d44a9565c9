from _anything import module_getattr as __getattr__  # noqa
