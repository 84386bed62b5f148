"""The built-in tiny model (ldm family): a real Stability-AI `LatentDiffusion`, random weights, seeded.

In a WebUI-pinned environment (no diffusers) this is what 'tiny' means: the very classes the
WebUI holds as `shared.sd_model` for SD1, built from a small config in the layout of
`v1-inference.yaml`. Its architecture is exactly the tiny diffusers model's (tiny_diffusers.py),
so a state dict converts 1:1 between the two families, which is how the ldm adapter is checked
against the diffusers one.

The text stage is ldm's own `FrozenCLIPEmbedder`, which calls `from_pretrained(version)`: we
point `version` at a local folder holding the real CLIP tokenizer files (clip_vocab) and a tiny
CLIPTextModel (config + seeded weights), written once into the cache dir. Nothing asks the hub.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch

from .clip_vocab import default_cache_dir, write_tokenizer_files
from .tiny_diffusers import TEXT, TINY_RES, UNET, VAE

LATENT = TINY_RES // 8  # ldm's image_size is the latent size (64 px -> 8x8 latents)

# diffusers "attention_head_dim=8" in an SD1 config is really the head COUNT (a historic naming
# slip diffusers keeps for SD1 configs); ldm's UNetModel says it as num_heads=8 with legacy=True,
# so both give 8 heads of channels/8 at every level (4 dims at 32 channels, 8 at 64).
UNET_LDM = dict(
    image_size=LATENT, in_channels=UNET["in_channels"], out_channels=UNET["out_channels"],
    model_channels=UNET["block_out_channels"][0], channel_mult=[1, 2], num_res_blocks=UNET["layers_per_block"],
    attention_resolutions=[1],           # attention at the first level only (CrossAttnDownBlock2D, DownBlock2D)
    num_heads=UNET["attention_head_dim"], use_spatial_transformer=True, transformer_depth=1,
    context_dim=UNET["cross_attention_dim"], use_checkpoint=False, legacy=True,
    use_linear_in_transformer=False)    # SD1: 1x1 conv proj_in/proj_out, as diffusers' use_linear_projection=False
VAE_LDM = dict(
    embed_dim=VAE["latent_channels"], lossconfig={"target": "torch.nn.Identity"},
    ddconfig=dict(double_z=True, z_channels=VAE["latent_channels"], resolution=TINY_RES, in_channels=3, out_ch=3,
                  ch=VAE["block_out_channels"][0], ch_mult=[1, 1, 2, 2], num_res_blocks=VAE["layers_per_block"],
                  attn_resolutions=[], dropout=0.0))


def clip_folder(seed: int = 0) -> Path:
    """A local CLIP folder (tokenizer files + tiny CLIPTextModel, its output mean away from 0 as a trained
    CLIP's) for FrozenCLIPEmbedder(version=...).

    Written once per seed, built in a temporary folder and renamed into place, so a second process
    never reads a half-written folder. The weights come from their own seeded generator state, so
    whether the folder already existed changes nothing else the caller draws from torch's RNG.
    """
    folder = default_cache_dir() / f"tiny-ldm-clip-v2-seed{seed}"  # v2: the final layer norm's bias (below)
    if (folder / "config.json").is_file():
        return folder
    from transformers import CLIPTextConfig, CLIPTextModel
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_tokenizer_files(tmp)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        text = CLIPTextModel(CLIPTextConfig(**TEXT))
    # A random CLIP's final layer norm (bias 0) gives outputs of mean ~1e-9. The WebUI's default emphasis
    # ("Original", sd_emphasis.py) rescales the conditioning by its mean, dividing by that ~0: NaN or a huge
    # gradient in the WebUI. A trained CLIP's output mean is far from 0; so is this one's.
    with torch.no_grad():
        text.text_model.final_layer_norm.bias.fill_(0.5)
    text.save_pretrained(str(tmp), safe_serialization=True)
    try:
        os.rename(tmp, folder)
    except OSError:  # another process finished first: theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def tiny_ldm_config(seed: int = 0, parameterization: str = "eps", device="cpu") -> dict:
    """The LatentDiffusion config, in the layout of SD1's v1-inference.yaml `model:` section."""
    return {
        "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
        "params": dict(
            linear_start=0.00085, linear_end=0.012, timesteps=1000, beta_schedule="linear",
            first_stage_key="jpg", cond_stage_key="txt", image_size=LATENT, channels=UNET["in_channels"],
            cond_stage_trainable=False, conditioning_key="crossattn", monitor="val/loss_simple_ema",
            scale_factor=VAE["scaling_factor"], use_ema=False, parameterization=parameterization,
            unet_config={"target": "ldm.modules.diffusionmodules.openaimodel.UNetModel", "params": UNET_LDM},
            first_stage_config={"target": "ldm.models.autoencoder.AutoencoderKL", "params": VAE_LDM},
            # FrozenCLIPEmbedder's device defaults to "cuda": it moves token ids there in forward.
            cond_stage_config={"target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder",
                               "params": {"version": str(clip_folder(seed)), "device": str(device)}}),
    }


def build_tiny_ldm(seed: int = 0, parameterization: str = "eps", device="cpu"):
    """A tiny SD1 `LatentDiffusion` (eps or v); the same seed gives bit-identical weights."""
    from ldm.util import instantiate_from_config
    from omegaconf import OmegaConf
    if parameterization not in ("eps", "v"):
        raise ValueError(f"parameterization: must be 'eps' or 'v' (got {parameterization!r})")
    # OmegaConf, as the WebUI loads its yaml: LatentDiffusion reads `first_stage_config.params...`
    # with attribute access, and DiffusionWrapper pops keys from the UNet config.
    config = OmegaConf.create(tiny_ldm_config(seed, parameterization, device))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = instantiate_from_config(config)
        _unzero(model.model.diffusion_model)
    return model.eval()


def _unzero(unet: torch.nn.Module) -> None:
    """Give ldm's zero-initialised layers (each ResBlock's last conv, each SpatialTransformer's
    proj_out, the output conv) PyTorch's default random init, as diffusers' UNet has.

    ldm zeroes them to start training from scratch gently; but a zero output conv makes an
    untrained UNet predict exactly 0 and pass no gradient back, so nothing but Dreambooth's
    output layer could ever learn, and every other layer would be invisible to the tests. A tiny
    stand-in for a trained model needs every layer live.
    """
    for m in unet.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) and not m.weight.any():
            m.reset_parameters()
