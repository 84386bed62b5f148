"""The low-VRAM option's second half: model parts that a phase of the run never calls leave the GPU
for that phase.

While the images and prompts are encoded (once, at the start), the UNet waits on the CPU
(`unet_parked`): the VAE's activations at 1024 px then come on top of the VAE and text encoders alone,
not of the whole model.

With the prompts' conditioning cached (nothing makes them change: the text encoders frozen, no tag
shuffle or caption dropout) and the latents cached, an update runs the UNet alone; the text encoders
and the VAE only sit in GPU memory (1.6 GiB of fp16 weights at SDXL size). Under gradient
checkpointing, where memory is what matters, they wait on the CPU from the first update to the last
and come back before anything else needs them (the final validation, the export, the caller: the
WebUI's loaded model is put back where it was). Not when something calls them mid-run: validation
or samples during the loop, prior preservation.

An adapter offers the parts it can lend (`parkable_parts`): the standalone adapters and the sgm one
(the WebUI's SDXL); not the WebUI's SD1 model nor Forge's, whose memory managers move parts themselves.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Optional

import torch


def _lowvram(cfg, adapter) -> bool:
    return cfg.gradient_checkpointing and adapter.device.type == "cuda" and hasattr(adapter, "parkable_parts")


@contextlib.contextmanager
def unet_parked(cfg, adapter):
    """The UNet on the CPU inside the block (low VRAM only), back on its device after, however it ends."""
    if not _lowvram(cfg, adapter):
        yield
        return
    unet = adapter.unet()
    where = next(unet.parameters()).device
    unet.to("cpu")
    torch.cuda.empty_cache()
    try:
        yield
    finally:
        unet.to(where)


def park_frozen_parts(cfg, adapter, cacheable: bool, prior) -> Optional[Callable[[], None]]:
    """Move the parts to the CPU; returns the call that puts each back on its device (None: nothing moved)."""
    if not (_lowvram(cfg, adapter) and cacheable and prior is None and not cfg.val_every and not cfg.sample_every):
        return None
    parts = [m for m in adapter.parkable_parts() if any(True for _ in m.parameters())]
    where = [next(m.parameters()).device for m in parts]
    for m in parts:
        m.to("cpu")
    torch.cuda.empty_cache()
    done = []

    def restore() -> None:
        if not done:
            done.append(True)
            for m, dev in zip(parts, where):
                m.to(dev)
    return restore
