"""A diffusers SDXL model's state under sgm's single-file names (what AUTOMATIC1111 loads into its
DiffusionEngine and diffusers' from_single_file reads back).

- UNet: `model.diffusion_model.` + the ldm path (ldm_names.py: SDXL's blocks are laid out as SD's,
  two ResBlocks and a sampler a level), and the vector input's MLP `add_embedding.linear_{1,2}` ->
  `label_emb.0.{0,2}`.
- VAE: `first_stage_model.` + ldm's names (as SD's).
- CLIP-L: `conditioner.embedders.0.transformer.` + transformers' own names.
- OpenCLIP bigG: `conditioner.embedders.1.model.` + open_clip's names (open_clip_names.py).
- `denoiser.sigmas`: sgm's discrete denoiser's buffer, sqrt((1 - a) / a) of the noise schedule.
"""
from __future__ import annotations

from typing import Dict

import torch

from .ldm_names import diffusers_to_ldm_state
from .open_clip_names import open_clip_state

PREFIXES = {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
            "text_encoder": "conditioner.embedders.0.transformer.", "text_encoder_2": "conditioner.embedders.1.model."}
LABEL_EMB = [("add_embedding.linear_1", "label_emb.0.0"), ("add_embedding.linear_2", "label_emb.0.2")]
def sgm_sigmas(scheduler_config: dict) -> torch.Tensor:
    """As sgm's LegacyDDPMDiscretization: the schedule in float64, (1 - a) / a cast to float32, then
    the root (from float32 alphas_cumprod, 1 - a near t = 0 would lose digits)."""
    steps = scheduler_config.get("num_train_timesteps", 1000)
    start, end = scheduler_config.get("beta_start", 0.00085), scheduler_config.get("beta_end", 0.012)
    a = torch.cumprod(1 - torch.linspace(start ** 0.5, end ** 0.5, steps, dtype=torch.float64) ** 2, 0)
    return ((1 - a) / a).float() ** 0.5


def diffusers_to_sgm_state(unet: Dict[str, torch.Tensor], vae: Dict[str, torch.Tensor], text: Dict[str, torch.Tensor],
                           text2: Dict[str, torch.Tensor], layers_per_block: int, vae_blocks: int,
                           scheduler_config: dict) -> Dict[str, torch.Tensor]:
    out = diffusers_to_ldm_state(unet, vae, text, layers_per_block, vae_blocks, PREFIXES, LABEL_EMB)
    for k, v in open_clip_state(text2).items():
        out[PREFIXES["text_encoder_2"] + k] = v
    out["denoiser.sigmas"] = sgm_sigmas(scheduler_config)
    return out
