"""Which folders the plain models load (SD1.x/SD2.x and SDXL configs), and their classes by part."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

from .blocks import read_config

SD_PARTS = ("unet", "vae", "text_encoder")


def classes() -> Dict[str, type]:
    from .clip_text import CLIPTextModel, CLIPTextModelWithProjection
    from .unet import UNet2DConditionModel
    from .vae import AutoencoderKL
    return {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel,
            "text_encoder_2": CLIPTextModelWithProjection}  # (SDXL's second)


def unsupported_folder(path: Path, parts: Sequence[str] = SD_PARTS) -> Optional[str]:
    """Why a diffusers folder is not for the plain models ('unet: class_embed_type = ...'), or None."""
    from . import clip_text, unet, vae
    checks = {"unet": unet.unsupported, "vae": vae.unsupported, "text_encoder": clip_text.unsupported,
              "text_encoder_2": lambda c: clip_text.unsupported(c, "CLIPTextModelWithProjection")}
    for part in parts:
        try:
            why = checks[part](read_config(Path(path) / part))
        except (OSError, ValueError) as e:
            return f"{part}: {e}"
        if why:
            return f"{part}: {why}"
    return None


def with_class_names(unet: dict, vae: dict, text: dict):
    """Configs as diffusers and transformers write them (what a saved folder needs to load there)."""
    return ({"_class_name": "UNet2DConditionModel", **unet}, {"_class_name": "AutoencoderKL", **vae},
            text_config(text))


def text_config(text: dict, architecture: str = "CLIPTextModel") -> dict:
    """A CLIP text encoder's config as transformers writes it (SDXL's second: CLIPTextModelWithProjection)."""
    return {"architectures": [architecture], "model_type": "clip_text_model", **text}
