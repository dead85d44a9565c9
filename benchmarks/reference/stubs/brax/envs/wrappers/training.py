class EpisodeWrapper:
    def __init__(self, *a, **k):
        raise NotImplementedError("brax is stubbed in benchmarks/reference/stubs")


class AutoResetWrapper(EpisodeWrapper):
    pass
