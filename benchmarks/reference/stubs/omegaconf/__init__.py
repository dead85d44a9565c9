"""Stub of omegaconf: only what the reference scripts touch outside make_train."""
import json


class OmegaConf:
    @staticmethod
    def to_container(c, *a, **k):
        return dict(c)

    @staticmethod
    def to_yaml(c, *a, **k):
        return json.dumps(c, indent=1, default=str)

    @staticmethod
    def save(*a, **k):
        pass

    @staticmethod
    def create(c=None, *a, **k):
        return dict(c or {})


DictConfig = dict
