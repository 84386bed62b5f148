"""GPU memory of a training run, estimated from its parts, and the setting that makes it fit.

peak = weights (frozen in bf16/fp16, trained in fp32) + gradients (fp32) + optimizer states
     + the larger of: AdamW's foreach temporaries (the recipe), or
       per-image activations x batch x (RES/RES_B)^2 + an offset.
The per-image activations and the offsets are fitted to bench/step_bench.py and
bench/ldm_bench.py on an H100 at 512 px (2026-11-22; docs/PERFORMANCE.md): every measured row
is within 15%. Scaling with resolution as pixel count is an assumption (SDPA attention is
linear in memory); other GPUs differ by their allocator and kernels, not by much.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

GIB = 2 ** 30
# (UNet, text encoder, VAE) parameters
PARAMS = {"sd1": (859.52e6, 123.06e6, 83.65e6), "sd2": (865.91e6, 340.39e6, 83.65e6),
          "sdxl": (2567.5e6, 817.0e6, 83.65e6)}
BASE_RES = {"sd1": 512, "sd2": 768, "sdxl": 1024}
TOKEN_DIM = {"sd1": 768, "sd2": 1024, "sdxl": 768 + 1280}  # one TI vector (SDXL: one per text encoder)
OPT_BYTES = {"adamw": 8, "adamw8bit": 2}
LORA_PARAMS_PER_RANK = 0.2e6  # rank-1 LoRA on SD1.5's attention projections, about
# (GiB per image, offset GiB) measured at 512 px, bf16 autocast. "ours" runs SDPA attention, norms in
# bf16 (models/norms.py) and CUDA graphs; checkpointing recomputes blocks; "recipe" is the diffusers
# example scripts' step; "webui" is the ldm model's attention as shipped. ours/checkpointing refitted
# 2026-11-22 after the bf16 norms (bench/results/2026-11-22-NVIDIA_H100_80GB_HBM3-bf16-norms.json).
ACTIVATIONS = {
    ("dreambooth", "ours"): (0.842, -0.55), ("dreambooth", "checkpointing"): (0.134, 0.31),
    ("dreambooth", "recipe"): (1.187, -1.25),
    ("lora", "ours"): (0.799, 0.22), ("lora", "checkpointing"): (0.220, 0.33), ("lora", "recipe"): (1.09, 0.64),
    ("ti", "ours"): (0.757, 0.51), ("ti", "checkpointing"): (0.232, 0.60), ("ti", "recipe"): (0.98, 0.61),
    ("ti", "ldm_ours"): (0.92, 1.77), ("lora", "ldm_ours"): (1.00, 1.89), ("ti", "ldm_webui"): (6.49, 1.67),
    # SDXL at 1024 px, H200 (bench/sdxl_bench.py, 2026-11-30): ours on the WebUI's fp16 DiffusionEngine (its
    # offset holds autocast's bf16 copy of the fp16 UNet) and the diffusers SDXL examples' step
    ("ti", "sdxl_ours"): (7.959, 10.00), ("lora", "sdxl_ours"): (8.753, 9.44),
    ("ti", "sdxl_recipe"): (6.313, 0.84), ("lora", "sdxl_recipe"): (7.237, 0.26),
    # SDXL LoRA with the low-VRAM option on the WebUI's fp16 model (text encoders and VAE off the GPU while
    # the UNet trains; bench/results/2026-11-30-NVIDIA_H200-sdxl-lowvram.json): one point, BS 1, 11.70 GiB.
    # The per-image part as SD1's checkpointing/ours ratio scales SDXL's LoRA row, the offset fitted to
    # that point; it errs high (that row also held ~5 GiB an earlier row had left allocated)
    ("lora", "sdxl_checkpointing"): (2.410, 2.82),
    # the standalone diffusers SDXL path (bf16 weights; bench/results/2026-11-30-NVIDIA_H200-sdxl-standalone.json),
    # and its low-VRAM LoRA (one point, BS 1: 6.89 GiB; the per-image part scaled as above)
    ("ti", "sdxl_standalone"): (5.160, 0.55), ("lora", "sdxl_standalone"): (5.410, 0.71),
    ("lora", "sdxl_standalone_checkpointing"): (1.490, -1.07),
}


@dataclass(frozen=True)
class MemoryEstimate:
    total_gib: float
    parts: Dict[str, float]

    def text(self) -> str:
        return " + ".join(f"{k} {v:.2f}" for k, v in self.parts.items()) + f" = {self.total_gib:.2f} GiB"


def estimate(method: str, batch_size: int, resolution: int, arch: str = "sd1", optimizer: str = "adamw",
             checkpointing: bool = False, train_text_encoder: bool = False, rank: int = 4, vectors: int = 1,
             impl: str = "ours") -> MemoryEstimate:
    """impl: ours | recipe (the diffusers example scripts) | ldm_ours | ldm_webui (the WebUI's model)."""
    unet, te, vae = PARAMS[arch]
    recipe = impl == "recipe"
    if method == "dreambooth":
        trained, frozen = unet + (te if train_text_encoder else 0), vae + (0 if train_text_encoder else te)
    elif method == "lora":
        trained, frozen = LORA_PARAMS_PER_RANK * rank * (1.5 if train_text_encoder else 1.0), unet + te + vae
    elif recipe:  # the diffusers TI example trains the whole embedding table(s), the text encoder(s) in fp32
        trained, frozen = 49408.0 * TOKEN_DIM[arch], unet + vae + te * 2
    else:
        trained, frozen = vectors * float(TOKEN_DIM[arch]), unet + te + vae
    weights = (frozen * 2 + trained * 4) / GIB
    grads = trained * 4 / GIB
    opt = trained * OPT_BYTES[optimizer] / GIB
    key = ("standalone_checkpointing" if impl == "standalone" else "checkpointing") if checkpointing else impl
    per_img, offset = ACTIVATIONS.get((method, key)) or ACTIVATIONS[(method, "ours")]
    if arch == "sdxl":  # measured rows where there are (the SD1 rows scaled by pixels are far under SDXL's)
        per_img, offset = _sdxl_activations(method, key, per_img, offset)
    act = max(0.0, batch_size * per_img * (resolution / BASE_RES[arch]) ** 2 + offset)
    temp = trained * 4 / GIB if recipe and method == "dreambooth" else 0.0  # foreach AdamW's temporaries
    parts = {"weights": weights, "gradients": grads, "optimizer": opt}
    if temp > act:
        parts["optimizer temporaries"] = temp
    else:
        parts["activations"] = act
    return MemoryEstimate(sum(parts.values()), parts)


def _sdxl_activations(method: str, key: str, per_img: float, offset: float) -> Tuple[float, float]:
    """SDXL's (GiB per image at 1024 px, offset): measured for TI and LoRA; elsewhere not measured yet,
    so SDXL's measured LoRA row scaled by what the SD1 rows say the setting changes (checkpointing:
    the per-image part; Dreambooth: as LoRA), its offset kept: an estimate that errs high."""
    if (method, f"sdxl_{key}") in ACTIVATIONS:
        return ACTIVATIONS[(method, f"sdxl_{key}")]
    sd1_ours = ACTIVATIONS[(method, "ours")][0]
    measured, sdxl_offset = ACTIVATIONS[("lora", "sdxl_ours")]
    return measured * per_img / sd1_ours, sdxl_offset


def estimate_gib(method: str, batch_size: int, resolution: int, impl: str = "ours") -> float:
    """The bench's rows: impl in recipe | ours | ours_lowvram | ours_compiled | ldm_ours | ldm_webui, and
    sdxl_ + one of them or standalone | standalone_lowvram (compiled: estimated as ours; it measured 9%
    under at BS 16; ours_lowvram_fp16 and _bf16_eager: as ours_lowvram); bench/forge_bench.py's
    standalone | forge | forge-bf16."""
    arch = "sdxl" if impl.startswith("sdxl_") else "sd1"  # bench/sdxl_bench.py's rows: SDXL at 1024 px
    impl = impl[len("sdxl_"):] if arch == "sdxl" else impl
    # Forge holds its model as the WebUI does (half-precision weights under bf16 autocast, whose weight
    # casts are kept for the backward pass): its rows measured within 10% of the ldm model's (2026-11-30)
    impl = {"forge": "ldm_ours", "forge-bf16": "ldm_ours"}.get(impl, impl)
    low = "lowvram" in impl
    family = "standalone" if impl.startswith("standalone") else "ours"
    return estimate(method, batch_size, resolution, arch, optimizer="adamw8bit" if low and arch == "sd1" else "adamw",
                    checkpointing=low, impl=family if low or impl == "ours_compiled" else impl).total_gib


def fit_advice(method: str, batch_size: int, grad_accum: int, resolution: int, vram_gib: float,
               arch: str = "sd1", train_text_encoder: bool = False) -> Tuple[bool, str, Optional[dict]]:
    """(fits, sentence, settings that fit) for a card with `vram_gib` of memory.

    Tries, in order of their cost in speed: the batch as given; a smaller batch with more
    accumulation (same effective batch); gradient checkpointing; 8-bit AdamW."""
    eff = batch_size * grad_accum

    def need(bs: int, ckpt: bool, opt: str) -> float:
        return estimate(method, bs, resolution, arch, opt, ckpt, train_text_encoder).total_gib

    usable = vram_gib * 0.95  # the CUDA context and the desktop take a little
    first = need(batch_size, False, "adamw")
    if first <= usable:
        return True, f"BS {batch_size} needs about {first:.1f} GiB: it fits in {vram_gib:g} GB", None
    for opt in ("adamw", "adamw8bit"):
        for ckpt in (False, True):
            for bs in range(batch_size, 0, -1):
                if eff % bs:
                    continue
                est = need(bs, ckpt, opt)
                if est <= usable:
                    how = [f"BS {bs} with GA {eff // bs}"] + (["gradient checkpointing"] if ckpt else []) + \
                          (["8-bit AdamW"] if opt == "adamw8bit" else [])
                    return False, (f"BS {batch_size} needs about {first:.1f} GiB and does not fit in {vram_gib:g} GB:"
                                   f" use {', '.join(how)} (about {est:.1f} GiB)"), \
                        {"batch_size": bs, "grad_accum": eff // bs, "gradient_checkpointing": ckpt, "optimizer": opt}
    low = need(1, True, "adamw8bit")
    return False, (f"even BS 1 with gradient checkpointing and 8-bit AdamW needs about {low:.1f} GiB, more than"
                   f" {vram_gib:g} GB: train LoRA or Textual Inversion instead, or at a lower resolution"), None
