"""Load a model by name: 'tiny' gives the tiny model of the family this environment has
(diffusers in the standalone environment, ldm in a WebUI-pinned one); a path gives a
diffusers folder or a single-file checkpoint."""
from __future__ import annotations

import importlib.util

import torch


def has_diffusers() -> bool:
    return importlib.util.find_spec("diffusers") is not None


def load_model(model: str, device, dtype=torch.float32, seed: int = 0, config=None):
    if model == "tiny" and not has_diffusers():
        from .tiny_ldm import build_tiny_ldm
        from .ldm_adapter import LdmAdapter
        return LdmAdapter(build_tiny_ldm(seed), device=device, dtype=dtype, source="built-in tiny ldm model")
    from .diffusers_adapter import load_diffusers
    return load_diffusers(model, device=device, dtype=dtype, seed=seed, config=config)
