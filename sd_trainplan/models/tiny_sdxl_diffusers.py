"""SDXL's architecture as diffusers configs: full size (random weights, for benchmarks) and tiny (tests).

FULL: stabilityai/stable-diffusion-xl-base-1.0's unet/vae/text_encoder(_2) configs (2.57B UNet,
CLIP-L and OpenCLIP bigG). TINY: the architecture of tests/hosts/make_tiny_sdxl.py's sgm model (the
tiny SDXL the WebUI tests load), so a checkpoint written from one loads into the other: a UNet of
SDXL's layout (three levels, attention at the two lower, linear proj_in/out, the text_time vector
input), a 2-layer CLIP-L 768 wide, open_clip's ViT-S-32-alt text tower (256 wide, 10 layers) as
encoder 2, a 4-level 32-channel VAE. 64 px pictures, 8x8 latents.
"""
from __future__ import annotations

from pathlib import Path

from .single_file import SD1_TEXT, SD_VAE

UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            block_out_channels=(320, 640, 1280), transformer_layers_per_block=(1, 2, 10),
            attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
            addition_embed_type="text_time", addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
VAE = dict(SD_VAE, sample_size=1024, scaling_factor=0.13025)
TEXT_L = dict(SD1_TEXT, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
TEXT_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
              max_position_embeddings=77, hidden_act="gelu", projection_dim=1280, bos_token_id=49406,
              eos_token_id=49407, pad_token_id=0)
FULL = (UNET, VAE, TEXT_L, TEXT_G)

TINY_UNET = dict(UNET, sample_size=8, block_out_channels=(32, 64, 64), transformer_layers_per_block=(1, 1, 1),
                 attention_head_dim=(2, 4, 4), cross_attention_dim=1024, projection_class_embeddings_input_dim=1792)
TINY_VAE = dict(VAE, block_out_channels=(32,) * 4, layers_per_block=1, sample_size=64)
TINY_TEXT_L = dict(TEXT_L, hidden_size=768, intermediate_size=768, num_hidden_layers=2, num_attention_heads=12)
TINY_TEXT_G = dict(TEXT_G, hidden_size=256, intermediate_size=1024, num_hidden_layers=10, num_attention_heads=4,
                   projection_dim=256)
TINY = (TINY_UNET, TINY_VAE, TINY_TEXT_L, TINY_TEXT_G)

# sgm's (and the WebUI's) SDXL schedule: SD's scaled_linear betas, eps prediction
SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                 prediction_type="epsilon", timestep_spacing="leading", steps_offset=1)


def tiny_sdxl(seed: int = 0, prediction_type: str = "epsilon", device="cpu"):
    """The tiny SDXL adapter, random weights from `seed`."""
    from .sdxl_diffusers import adapter_from_configs
    return adapter_from_configs(TINY, "tiny SDXL", device, seed=seed, prediction_type=prediction_type)


def save_tiny_sdxl_folder(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> Path:
    """Write the tiny SDXL as a diffusers StableDiffusionXLPipeline folder."""
    return tiny_sdxl(seed, prediction_type).save_folder(folder)
