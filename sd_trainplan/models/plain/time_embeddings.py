"""The UNet's embeddings of the time: the timestep's (every SD), and SDXL's added one.

SDXL (diffusers' `addition_embed_type: "text_time"`) conditions each resnet on more than the
timestep: the pooled text embedding of its second encoder and six size ids (original height and
width, crop top and left, target height and width) are turned into one vector, `add_embedding`'s MLP
of [pooled text, sinusoidal features of each id], which is added to the timestep's embedding.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


class TimestepEmbedding(nn.Module):
    def __init__(self, ch: int, dim: int):
        super().__init__()
        self.linear_1 = nn.Linear(ch, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(F.silu(self.linear_1(x)))


def timestep_features(t: torch.Tensor, ch: int) -> torch.Tensor:
    """Sinusoidal features of the timesteps (or SDXL's size ids), in fp32, cosines first
    (flip_sin_to_cos, shift 0)."""
    half = ch // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def added_embedding_unsupported(c: dict) -> Optional[str]:
    """Why a UNet config's added embedding is not one this file computes (None: none, or SDXL's)."""
    kind = c.get("addition_embed_type")
    if kind is None:
        return None
    if kind != "text_time":
        return f"addition_embed_type = {kind!r}"
    for key in ("addition_time_embed_dim", "projection_class_embeddings_input_dim"):
        value = c.get(key)
        if not isinstance(value, int) or value <= 0 or (key == "addition_time_embed_dim" and value % 2):
            return f"{key} = {value!r}"  # (an odd width diffusers pads with a zero column: not done here)
    return None


def added_embedding(unet: nn.Module, dtype: torch.dtype, added_cond_kwargs: Optional[dict]) -> torch.Tensor:
    """SDXL's vector: add_embedding([text_embeds, features of each of the 6 time_ids]), in `dtype` (the
    timestep embedding's) as diffusers casts it."""
    if not added_cond_kwargs or "text_embeds" not in added_cond_kwargs or "time_ids" not in added_cond_kwargs:
        raise ValueError("this UNet (addition_embed_type 'text_time', SDXL) needs added_cond_kwargs with "
                         "'text_embeds' and 'time_ids'")
    text, ids = added_cond_kwargs["text_embeds"], added_cond_kwargs["time_ids"]
    width = unet.config.addition_time_embed_dim
    features = timestep_features(ids.flatten(), width).reshape(text.shape[0], -1)
    return unet.add_embedding(torch.cat([text, features], dim=-1).to(dtype))
