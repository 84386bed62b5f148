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
