"""Which folders the plain models load (SD1.x/SD2.x configs), and their classes by part."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from .blocks import read_config


def classes() -> Dict[str, type]:
    from .clip_text import CLIPTextModel
    from .unet import UNet2DConditionModel
    from .vae import AutoencoderKL
    return {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel}


def unsupported_folder(path: Path) -> Optional[str]:
    """Why a diffusers folder is not for the plain models ('unet: class_embed_type = ...'), or None."""
    from . import clip_text, unet, vae
    for part, module in (("unet", unet), ("vae", vae), ("text_encoder", clip_text)):
        try:
            why = module.unsupported(read_config(Path(path) / part))
        except (OSError, ValueError) as e:
            return f"{part}: {e}"
        if why:
            return f"{part}: {why}"
    return None


def with_class_names(unet: dict, vae: dict, text: dict):
    """Configs as diffusers and transformers write them (what a saved folder needs to load there)."""
    return ({"_class_name": "UNet2DConditionModel", **unet}, {"_class_name": "AutoencoderKL", **vae},
            {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model", **text})


def unet_config_of(model: str) -> Optional[dict]:
    """The config of the plain UNet a standalone run of `model` will train, read without loading a
    weight (a few KB of JSON, or a .safetensors header): for the stand-in that rehearses the first
    update while the model loads (train/rehearsal.py). None where the run's UNet is not ours (SDXL,
    other configs, .ckpt files, the built-in tiny model) or the model cannot be read: the load itself
    reports that."""
    from ..single_file import ARCHS, detect, read_shapes
    if model in ("random-sd1", "random-sd2"):
        return dict(ARCHS[model.split("-")[1]][0])
    path = Path(model).expanduser()
    try:
        if path.is_dir():
            return None if unsupported_folder(path) else read_config(path / "unet")
        if path.suffix == ".safetensors":
            arch = detect(read_shapes(path))
            return dict(ARCHS[arch][0]) if arch in ("sd1", "sd2") else None
    except (OSError, ValueError):
        return None
    return None
