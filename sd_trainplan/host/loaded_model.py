"""What the WebUI is doing with its loaded model, checked before a run touches it.

Every problem comes back as one line naming what to change (a ConfigError, as the trainer's
own checks), never as a crash halfway through a run. What can be handled is handled and said:
- --lowvram streams the UNet through the GPU one block at a time; a backward pass cannot
  follow that, so training is refused there (the planner works).
- --medvram keeps one part of the model on the GPU at a time; for the run, the parts training
  needs are held on the GPU instead (medvram.py), and the swapping is put back afterwards.
- Half precision (the WebUI's default): what trains is kept in fp32 (TI vectors, LoRA weights,
  Dreambooth's UNet as fp32 masters for the run); the frozen weights stay fp16.
- LoRA deltas the built-in Lora extension merged into the weights: put back from its own
  backups first (lora_merge below), or training is refused if they cannot be.
- SDXL (sgm DiffusionEngine): trained as SD1/SD2 are (host/sdxl_adapter.py); its refiner and
  other sgm models are refused with the reason (models/sgm_adapter.py reads the conditioner).
- fp8 weight storage, SD3 and other model classes: refused, with the reason.
"""
from __future__ import annotations

import sys
from typing import List, Optional

import torch

from ..train.config import ConfigError, TrainConfig


def model_problems(model, cfg: TrainConfig, cmd_opts, opts) -> List[str]:
    """Reasons this run cannot train the loaded model (empty: it can)."""
    if model is None:
        return ["model: no checkpoint is loaded in the WebUI; choose one in the checkpoint dropdown first"]
    kind = type(model).__name__
    if hasattr(model, "conditioner"):  # SDXL: sgm's DiffusionEngine
        from .sdxl_adapter import sdxl_problems
        problems = sdxl_problems(model)
        if problems:
            return problems
    elif not all(hasattr(model, a) for a in ("apply_model", "first_stage_model", "cond_stage_model", "parameterization")):
        return [f"model: the loaded model ({kind}) is not an SD1.x/SD2.x LatentDiffusion nor an SDXL DiffusionEngine;"
                " training inside the WebUI supports those (standalone mode loads other checkpoints)"]
    problems = []
    if getattr(model, "parameterization", None) not in ("eps", "v"):
        problems.append(f"model: parameterization {model.parameterization!r} is not supported (eps or v)")
    if getattr(cmd_opts, "lowvram", False):
        problems.append("model: the WebUI runs with --lowvram, which moves the UNet to the GPU one block at a time;"
                        " a training step's backward pass cannot follow that. Restart without --lowvram (--medvram"
                        " works), or train in standalone mode")
    fp8 = str(getattr(opts, "fp8_storage", "Disable") or "Disable")
    if fp8 != "Disable" or any(getattr(m, "fp16_weight", None) is not None for m in model.modules()):
        problems.append("model: the weights are stored in FP8 (Settings > Optimizations > FP8 weight); training needs"
                        " them in fp16 or fp32: set FP8 weight to Disable and reload the checkpoint")
    unet_dtype = next(model.model.diffusion_model.parameters()).dtype
    if cfg.precision == "fp32" and unet_dtype != torch.float32:
        problems.append(f"precision: the loaded model is {dtype_name(unet_dtype)} (the WebUI's half precision), so"
                        " fp32 training would need a second copy of it; choose auto, fp16 or bf16 (what trains is kept"
                        " in fp32 either way), or start the WebUI with --no-half")
    return problems


def precision_note(model, cfg: TrainConfig) -> Optional[str]:
    return dtype_note(next(model.model.diffusion_model.parameters()).dtype, cfg.method)


def dtype_note(dtype: torch.dtype, method: str) -> Optional[str]:
    """What training a half-precision model means for `method` (None for an fp32 model)."""
    if dtype == torch.float32:
        return None
    what = {"ti": "the new vectors are", "lora": "the LoRA weights are",
            "dreambooth": "the UNet (and text encoder, if trained) is held as fp32 masters for the run (put back to"
                          f" {dtype_name(dtype)} after), so it is"}[method]
    return f"the loaded model is {dtype_name(dtype)}: {what} trained in fp32 with {dtype_name(dtype)} mixed precision"


def dtype_name(dtype) -> str:
    return str(dtype).replace("torch.", "").replace("bfloat16", "bf16").replace("float16", "fp16") \
        .replace("float32", "fp32")


def check(model, cfg: TrainConfig, cmd_opts, opts) -> None:
    problems = model_problems(model, cfg, cmd_opts, opts)
    if problems:
        raise ConfigError(problems)


# --- LoRA merged into the weights by the built-in Lora extension ---------------------------------

def merged_lora_layers(model) -> List[torch.nn.Module]:
    """Layers with a network merged into them now. The Lora extension (networks.py, v1.10.1:
    network_apply_weights) backs a layer up before its first merge and keeps the backup after
    restoring it; `network_current_names` says what is merged at present (() once restored)."""
    return [m for m in model.modules()
            if (getattr(m, "network_weights_backup", None) is not None or getattr(m, "network_bias_backup", None)
                is not None) and getattr(m, "network_current_names", ("?",))]


def unmerge_lora(model) -> Optional[str]:
    """Put back the weights the built-in Lora extension merged networks into, with its own
    `network_restore_weights_from_backup`, and clear its list of loaded networks, so training
    (and the hash a test takes) sees the checkpoint's weights. This is the state the WebUI is in
    after a generation whose prompt has no <lora:...>; the next prompt with one merges it again
    from the same backups. Returns a note, or None when nothing was merged or loaded."""
    layers = merged_lora_layers(model)
    networks = sys.modules.get("networks")  # the Lora extension (extensions-builtin/Lora/networks.py)
    loaded = getattr(networks, "loaded_networks", None) if networks is not None else None
    if not layers and not loaded:
        return None
    restore = getattr(networks, "network_restore_weights_from_backup", None) if networks is not None else None
    if restore is None:
        raise ConfigError([f"model: {len(layers)} layers hold LoRA weights merged in place, and the Lora extension's"
                           " restore function is not available to put them back; generate once with no <lora:...>"
                           " in the prompt (or reload the checkpoint), then train"])
    names = sorted({getattr(n, "name", "?") for n in (loaded or [])})
    with torch.no_grad():
        for m in layers:
            restore(m)
            m.network_current_names = ()
    if loaded:
        loaded.clear()  # else the extension re-merges them (or adds them, in lora_functional mode) at the next forward
    return (f"put back the checkpoint's weights in {len(layers)} layers where the Lora extension had merged"
            f" {', '.join(names) or 'a LoRA'}; the next prompt with <lora:...> applies it again")
