"""Forge's txt2img prompt cache (modules/processing.py, StableDiffusionProcessing: the class
attributes `cached_uc` and `cached_c`, line 175), which host/forge_session.py clears after a run."""


class StableDiffusionProcessing:
    cached_uc = [None, None, None]
    cached_c = [None, None, None]
