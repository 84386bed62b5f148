"""The one small protocol the training loop talks to, whatever holds the model.

Adapters: `DiffusersAdapter` (standalone: a diffusers folder, a single-file checkpoint, or the
tiny model), `LdmAdapter` (the WebUI's loaded `LatentDiffusion`, or a tiny one). The loop only
encodes images and prompts, predicts noise (or v) for noisy latents, and asks which modules a
method trains; everything model-specific stays behind this line.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Protocol

import torch
from torch import nn


class TokenVectors(Protocol):
    """New Textual Inversion vectors spliced into the text encoder (base weights untouched)."""
    vectors: nn.Parameter      # [n_vectors, dim]
    prompt_text: str           # what to write in a prompt where the token goes


class ModelAdapter(Protocol):
    family: str                    # "diffusers" | "ldm"
    device: torch.device
    dtype: torch.dtype             # dtype of the frozen weights
    prediction_type: str           # "epsilon" | "v_prediction"
    alphas_cumprod: torch.Tensor   # [T] float32, on device
    latent_scale: int              # pixels per latent pixel (8 for SD)
    base_resolution: int           # 512 SD1/2-base, 768 SD2-v

    def unet(self) -> nn.Module: ...
    def text_encoder(self) -> nn.Module: ...
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor: ...       # [-1, 1] -> scaled latents
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor: ...     # scaled latents -> [-1, 1]
    def encode_prompts(self, prompts: List[str]) -> torch.Tensor: ...        # -> [B, 77, D]
    def predict(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...
    def add_token(self, token: str, n_vectors: int, init_word: str) -> TokenVectors: ...
    def remove_token(self, tv: TokenVectors) -> None: ...
    def lora_targets(self, text_encoder: bool, conv: bool) -> Dict[str, nn.Module]: ...  # kohya names
    def unet_state_for_checkpoint(self) -> Dict[str, torch.Tensor]: ...     # ldm-named full checkpoint
    def describe(self) -> str: ...


def target_for(adapter: ModelAdapter, prediction: str, latents: torch.Tensor, noise: torch.Tensor,
               t: torch.Tensor) -> torch.Tensor:
    """What the model should predict: the noise (eps) or the velocity v = sqrt(a) eps - sqrt(1-a) x0."""
    if prediction == "epsilon":
        return noise
    a = adapter.alphas_cumprod[t].float().view(-1, 1, 1, 1)
    return a.sqrt() * noise - (1 - a).sqrt() * latents


def add_noise(alphas_cumprod: torch.Tensor, latents: torch.Tensor, noise: torch.Tensor,
              t: torch.Tensor) -> torch.Tensor:
    a = alphas_cumprod[t].float().view(-1, 1, 1, 1)
    return (a.sqrt() * latents.float() + (1 - a).sqrt() * noise.float()).to(latents.dtype)


def sd_alphas_cumprod(steps: int = 1000, start: float = 0.00085, end: float = 0.012,
                      device: Optional[torch.device] = None) -> torch.Tensor:
    """SD's 'scaled_linear' beta schedule (ldm's make_beta_schedule('linear', ...))."""
    betas = torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).to(torch.float32).to(device or "cpu")
