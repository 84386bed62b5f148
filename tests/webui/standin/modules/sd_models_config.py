"""Mirrors modules/sd_models_config.py (v1.10.1) as far as host/ uses it: a checkpoint's config is
the .yaml of the same name beside its file, when there is one. Left out: the guess from the weights."""
import os


def find_checkpoint_config_near_filename(info):
    if info is None:
        return None

    config = f"{os.path.splitext(info.filename)[0]}.yaml"
    if os.path.exists(config):
        return config

    return None
