"""--medvram: the WebUI keeps one part of the model on the GPU at a time (modules/lowvram.py:
a forward pre-hook `send_me_to_gpu` on each part moves it in and the previous one out). A
training step needs the text encoder and the UNet together (Textual Inversion's gradient goes
back through the text encoder), and a part moved out mid-step would take the weights its
backward pass needs with it.

So for the run, the swapping is switched off and the parts stay on the GPU: the hooks are
taken out of their modules (and the VAE's encode/decode wrappers out of its instance), every
part goes to the device; `release` puts each part back on the device it was on, the hooks
back in their modules, and leaves lowvram's bookkeeping as it was after
`send_everything_to_cpu` (nothing on the GPU). --lowvram is refused before this (loaded_model).
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import nn

HOOK_NAME = "send_me_to_gpu"  # the pre-hook lowvram.setup_for_low_vram registers on each part
VAE_WRAPPERS = ("encode", "decode")  # instance attributes it sets on first_stage_model


class HeldOnDevice:
    def __init__(self, model: nn.Module, device, lowvram_module):
        self.lowvram = lowvram_module
        self.hooks: List[Tuple[dict, int, object]] = []
        for m in model.modules():
            for key, fn in list(m._forward_pre_hooks.items()):
                if getattr(fn, "__name__", "") == HOOK_NAME:
                    self.hooks.append((m._forward_pre_hooks, key, fn))
                    del m._forward_pre_hooks[key]
        self.vae = model.first_stage_model
        self.vae_wrappers = {k: self.vae.__dict__.pop(k) for k in VAE_WRAPPERS if k in self.vae.__dict__}
        lowvram_module.send_everything_to_cpu()
        # each parameter's device before (after send_everything_to_cpu: where lowvram keeps it)
        self.parts = [(m, p.device) for m in _parts(model) for p in [next(m.parameters(), None)] if p is not None]
        self.gib = sum(p.numel() * p.element_size() for m, _ in self.parts for p in m.parameters()) / 2**30
        for m, _ in self.parts:
            m.to(device)

    def release(self) -> None:
        for m, device in self.parts:
            m.to(device)
        for hooks, key, fn in self.hooks:
            hooks[key] = fn
        self.vae.__dict__.update(self.vae_wrappers)
        self.lowvram.module_in_gpu = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _parts(model: nn.Module) -> List[nn.Module]:
    """The modules lowvram swaps (its `to_remain_in_cpu` list): SDXL's whole conditioner, SD1/SD2's
    text model."""
    if hasattr(model, "conditioner"):
        return [model.model, model.first_stage_model, model.conditioner]
    cs = model.cond_stage_model
    clip = getattr(cs, "wrapped", cs)
    text = getattr(clip, "transformer", None) or getattr(clip, "model", None)
    return [m for m in (model.model, model.first_stage_model, text) if m is not None]
