"""GPU memory of a training run, estimated from its parts, and the setting that makes it fit.

peak = weights (frozen in bf16, trained in fp32) + gradients (fp32, trained) + optimizer states
     + activations (per image, scaled by pixel count, cut by gradient checkpointing) + a fixed
       overhead (allocator slack, cuBLAS/cuDNN workspaces, cached latents and text).
The per-image activation figures and the overhead are fitted to bench/step_bench.py's
measurements (docs/PERFORMANCE.md); the parameter counts are the architectures' own.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

GIB = 2 ** 30
# (UNet, text encoder, VAE) parameters
PARAMS = {"sd1": (859.52e6, 123.06e6, 83.65e6), "sd2": (865.91e6, 340.39e6, 83.65e6),
          "sdxl": (2567.5e6, 817.0e6, 83.65e6)}
BASE_RES = {"sd1": 512, "sd2": 768, "sdxl": 1024}
# Activation memory per image at the base resolution, GiB (bf16 autocast, SDPA attention).
ACT_PER_IMAGE = {"dreambooth": 1.18, "lora": 1.09, "ti": 1.09}
CHECKPOINTING_KEEPS = 0.30   # share of activation memory gradient checkpointing keeps
OVERHEAD_GIB = 0.6
LORA_PARAMS_PER_RANK = 0.8e6  # rank-1 LoRA on SD1.5's transformer blocks (attention, proj, ff), ~
OPT_BYTES = {"adamw": 8, "adamw8bit": 2}


@dataclass(frozen=True)
class MemoryEstimate:
    total_gib: float
    parts: Dict[str, float]

    def text(self) -> str:
        return " + ".join(f"{k} {v:.2f}" for k, v in self.parts.items()) + f" = {self.total_gib:.2f} GiB"


def estimate(method: str, batch_size: int, resolution: int, arch: str = "sd1", optimizer: str = "adamw",
             checkpointing: bool = False, train_text_encoder: bool = False, rank: int = 4,
             vectors: int = 1, recipe: bool = False) -> MemoryEstimate:
    """`recipe=True`: the diffusers example scripts' way (VAE and text encoder kept for every
    step, foreach AdamW's temporary copies, the whole embedding table trained for TI)."""
    unet, te, vae = PARAMS[arch]
    if method == "dreambooth":
        trained = unet + (te if train_text_encoder else 0)
        frozen = vae + (0 if train_text_encoder else te)
    elif method == "lora":
        trained = LORA_PARAMS_PER_RANK * rank * (1.2 if train_text_encoder else 1.0)
        frozen = unet + te + vae
    else:
        trained = 49408 * 768 if recipe else vectors * 768
        frozen = unet + te + vae
    weights = (frozen * 2 + trained * 4) / GIB
    grads = trained * 4 / GIB
    opt = trained * OPT_BYTES[optimizer] / GIB
    temp = trained * 4 / GIB if recipe else 0.0  # foreach AdamW's intermediate copies
    act = batch_size * ACT_PER_IMAGE[method] * (resolution / BASE_RES[arch]) ** 2
    if checkpointing:
        act *= CHECKPOINTING_KEEPS
    parts = {"weights": weights, "gradients": grads, "optimizer": opt + temp, "activations": act,
             "overhead": OVERHEAD_GIB}
    return MemoryEstimate(sum(parts.values()), parts)


def estimate_gib(method: str, batch_size: int, resolution: int, impl: str = "ours") -> float:
    """The bench's rows: impl in recipe | ours | ours_lowvram | ldm_ours | ldm_webui."""
    low = impl == "ours_lowvram"
    return estimate(method, batch_size, resolution, optimizer="adamw8bit" if low else "adamw", checkpointing=low,
                    recipe=impl == "recipe").total_gib


def fit_advice(method: str, batch_size: int, grad_accum: int, resolution: int, vram_gib: float,
               arch: str = "sd1", train_text_encoder: bool = False) -> Tuple[bool, str, Optional[dict]]:
    """(fits, sentence, settings that fit) for a card with `vram_gib` of memory.

    Tries, in order of speed cost: the batch as given; a smaller batch with more accumulation
    (same effective batch); gradient checkpointing; 8-bit AdamW."""
    eff = batch_size * grad_accum

    def fits(bs: int, ckpt: bool, opt: str) -> float:
        return estimate(method, bs, resolution, arch, opt, ckpt, train_text_encoder).total_gib

    usable = vram_gib * 0.95
    need = fits(batch_size, False, "adamw")
    if need <= usable:
        return True, f"BS {batch_size} needs about {need:.1f} GiB: it fits in {vram_gib:g} GB", None
    for opt in ("adamw", "adamw8bit"):
        for ckpt in (False, True):
            for bs in range(batch_size, 0, -1):
                if eff % bs:
                    continue
                est = fits(bs, ckpt, opt)
                if est <= usable:
                    how = [f"BS {bs} with GA {eff // bs}"] + (["gradient checkpointing"] if ckpt else []) + \
                          (["8-bit AdamW"] if opt == "adamw8bit" else [])
                    return False, (f"BS {batch_size} needs about {need:.1f} GiB and does not fit in {vram_gib:g} GB:"
                                   f" use {', '.join(how)} (about {est:.1f} GiB)"), \
                        {"batch_size": bs, "grad_accum": eff // bs, "gradient_checkpointing": ckpt, "optimizer": opt}
    low = fits(1, True, "adamw8bit")
    return False, (f"even BS 1 with checkpointing and 8-bit AdamW needs about {low:.1f} GiB: more than"
                   f" {vram_gib:g} GB; train LoRA or Textual Inversion instead, or a lower resolution"), None
