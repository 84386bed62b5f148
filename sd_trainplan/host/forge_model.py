"""What Forge is doing with its model, checked before a run touches it (Forge's loaded_model.py).

Forge (dfdcbab6) holds its model in its own engine classes, not in Stability-AI's ldm ones:
`shared.sd_model` is a `backend.diffusion_engine.*` engine once the first generation loaded it,
and a placeholder (`modules.sd_models.FakeInitialModel`) before. Every problem comes back as
one line naming what to change (a ConfigError, as the trainer's own checks):
- not loaded yet: Forge loads the checkpoint at the first generation, not at start-up;
- engines: SD1.x (`sd15.StableDiffusion`) trains. SDXL (`sdxl.StableDiffusionXL`) is refused:
  it is not the sgm DiffusionEngine that models/sgm_adapter.py drives in AUTOMATIC1111 (Forge's own
  UNet, two ClassicTextProcessingEngines and size embedder), so it needs an adapter of its own,
  not written yet. SD2, SD3, Flux and Chroma are refused too;
- "Diffusion in Low Bits" (fp8, nf4, fp4, gguf storage): no gradient flows through those weights;
- a noise predictor without a discrete schedule (flow models);
- fp32 training asked of a half-precision model (it would need a second copy).
Partial swap (part of the UNet left in system memory) is checked once the parts are loaded for
the run (forge_session.py).
"""
from __future__ import annotations

from typing import List, Optional

import torch

from ..train.config import ConfigError, TrainConfig
from .loaded_model import dtype_name, dtype_note

TRAINS = ("StableDiffusion",)  # backend/diffusion_engine/sd15.py
SDXL = ("StableDiffusionXL", "StableDiffusionXLRefiner")
SDXL_NOTE = ("the loaded model is SDXL: training SDXL inside Forge is not available yet (Forge's SDXL engine, with"
             " its own UNet, two text engines and size embedder, needs an adapter of its own); load an SD1.x"
             " checkpoint here, or train SDXL in AUTOMATIC1111 1.10")
NOT_LOADED = ("model: Forge has not loaded its checkpoint yet (it loads it at the first generation, not at start-up):"
              " generate one image in txt2img with the checkpoint you want to train, then Start again")
TRAINABLE = (torch.float16, torch.bfloat16, torch.float32)  # what a gradient can flow through


def engine_problems(model, cfg: TrainConfig) -> List[str]:
    """Reasons this run cannot train Forge's loaded model (empty: it can)."""
    if model is None or getattr(model, "forge_objects", None) is None:
        return [NOT_LOADED]
    kind = type(model).__name__
    if kind in SDXL:
        return [f"model: {SDXL_NOTE}"]
    if kind not in TRAINS:
        return [f"model: the loaded model's engine is {kind}; training inside Forge supports SD1.x checkpoints"
                " (Forge's StableDiffusion engine) for now: load one in the checkpoint dropdown"]
    problems = []
    unet = model.forge_objects.unet.model
    storage = getattr(unet, "storage_dtype", None)
    if storage not in TRAINABLE or _quantized(model):
        problems.append(f"model: the UNet is stored as {dtype_name(storage)} (\"Diffusion in Low Bits\" at the top of the"
                        " page); training needs fp16, bf16 or fp32 weights: set it to Automatic, generate once (Forge"
                        " reloads the model), then Start")
    predictor = getattr(unet, "predictor", None)
    if getattr(predictor, "alphas_cumprod", None) is None or \
            getattr(predictor, "prediction_type", None) not in ("epsilon", "v_prediction"):
        problems.append(f"model: its noise predictor ({type(predictor).__name__}) has no discrete eps/v schedule to"
                        " train against")
    dtype = unet_dtype(model)
    if cfg.precision == "fp32" and dtype in TRAINABLE and dtype != torch.float32:
        problems.append(f"precision: the loaded model is {dtype_name(dtype)}, so fp32 training would need a second copy of"
                        " it; choose auto, fp16 or bf16 (what trains is kept in fp32 either way)")
    return problems


def check(model, cfg: TrainConfig) -> None:
    problems = engine_problems(model, cfg)
    if problems:
        raise ConfigError(problems)


def unet_dtype(model) -> Optional[torch.dtype]:
    p = next(model.forge_objects.unet.model.diffusion_model.parameters(), None)
    return None if p is None else p.dtype


def precision_note(model, cfg: TrainConfig) -> Optional[str]:
    dtype = unet_dtype(model)
    return None if dtype is None else dtype_note(dtype, cfg.method)


def _quantized(model) -> bool:
    """bitsandbytes or gguf weights anywhere in the UNet or text encoder (Forge marks them so)."""
    fo = model.forge_objects
    for part in (fo.unet.model, fo.clip.cond_stage_model):
        for p in part.parameters():
            if hasattr(p, "bnb_quantized") or getattr(p, "gguf_cls", None) is not None or p.dtype.itemsize == 1:
                return True
    return False
