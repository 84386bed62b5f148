"""The built-in tiny model (diffusers family): SD1 architecture, random weights, seeded.

UNet, VAE and CLIP text encoder are built from small configs with the real CLIP vocabulary,
so the whole pipeline (tokenize, encode, noise, predict, decode, export, reload) runs on a CPU
in seconds. It can be written as a diffusers folder, which `from_single_file(config=...)` and
`from_pretrained` read offline.
"""
from __future__ import annotations

from pathlib import Path

import torch

TINY_RES = 64  # px; the VAE downsamples by 8 like SD's, so latents are 8x8

UNET = dict(sample_size=TINY_RES // 8, in_channels=4, out_channels=4, layers_per_block=1,
            block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32,
            attention_head_dim=8, norm_num_groups=32)
# ldm's GroupNorm has 32 groups everywhere, so every channel count is a multiple of 32: the tiny
# ldm LatentDiffusion (tiny_ldm.py) has exactly this architecture, for like-for-like checks.
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(32, 32, 64, 64),
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
           layers_per_block=1, norm_num_groups=32, sample_size=TINY_RES, scaling_factor=0.18215)
TEXT = dict(vocab_size=49408, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
            max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=32, bos_token_id=49406,
            eos_token_id=49407, pad_token_id=49407)
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 prediction_type="epsilon", clip_sample=False, set_alpha_to_one=False, steps_offset=1)


def build_tiny(seed: int = 0, prediction_type: str = "epsilon"):
    """(unet, vae, text_encoder, tokenizer, scheduler_config), weights from torch.manual_seed(seed)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .clip_vocab import clip_tokenizer

    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        unet = UNet2DConditionModel(**UNET)
        vae = AutoencoderKL(**VAE)
        text = CLIPTextModel(CLIPTextConfig(**TEXT))
    finally:
        torch.random.set_rng_state(state)
    return unet, vae, text, clip_tokenizer(), dict(SCHEDULER, prediction_type=prediction_type)


MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.31.0",
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
    "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None], "feature_extractor": [None, None],
    "image_encoder": [None, None], "requires_safety_checker": False}


def save_tiny_folder(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """Write the tiny model as a diffusers StableDiffusionPipeline folder (weights and configs)."""
    from .diffusers_adapter import DiffusersAdapter
    unet, vae, text, tokenizer, sched = build_tiny(seed, prediction_type)
    return DiffusersAdapter(unet, vae, text, tokenizer, sched, source="tiny").save_folder(folder)
