"""Load a model by name: 'tiny' gives the tiny model of the family this environment has
(diffusers in the standalone environment, ldm in a WebUI-pinned one); a path gives a
diffusers folder or a single-file checkpoint."""
from __future__ import annotations

import importlib.util

import torch


def has_diffusers() -> bool:
    return importlib.util.find_spec("diffusers") is not None


RANDOM = ("random-sd1", "random-sd2", "random-sdxl")  # full-size architectures with random weights, for benchmarks


def load_model(model: str, device, dtype=torch.float32, seed: int = 0, config=None, masters=()):
    """Frozen parts in `dtype`; the parts named in `masters` (what Dreambooth trains) in fp32."""
    if model == "random-sdxl":
        from .sdxl_diffusers import adapter_from_configs
        from .tiny_sdxl_diffusers import FULL
        return adapter_from_configs(FULL, "random SDXL", device, dtype, seed, masters=masters, plain=True)
    if model in RANDOM:
        return random_model(model.split("-")[1], device, dtype, seed, masters)
    if model == "tiny" and not has_diffusers():
        from .tiny_ldm import build_tiny_ldm
        from .ldm_adapter import LdmAdapter
        return LdmAdapter(build_tiny_ldm(seed), device=device, dtype=dtype, source="built-in tiny ldm model")
    from .diffusers_adapter import load_diffusers
    return load_diffusers(model, device=device, dtype=dtype, seed=seed, config=config, masters=masters)


def random_model(arch: str, device, dtype, seed: int = 0, masters=()):
    """An SD1.x/SD2.x-size model with random weights (models/plain's modules, as a folder of those
    architectures loads), built on the device, each part in the dtype it trains in: speed and memory
    do not depend on the values, so benchmarks need no checkpoint. `save_folder` writes it as a
    diffusers folder that diffusers and transformers load too."""
    from .clip_vocab import clip_tokenizer
    from .diffusers_adapter import DiffusersAdapter
    from .plain.clip_text import CLIPTextModel
    from .plain.parts import with_class_names
    from .plain.unet import UNet2DConditionModel
    from .plain.vae import AutoencoderKL
    from .single_file import ARCHS, SCHEDULER
    unet_cfg, vae_cfg, text_cfg, _, base = ARCHS[arch]
    unet_cfg, vae_cfg, text_cfg = with_class_names(unet_cfg, vae_cfg, text_cfg)
    torch.manual_seed(seed)
    old = torch.get_default_dtype()

    def build(part, make):
        torch.set_default_dtype(torch.float32 if part in masters or dtype not in (torch.bfloat16, torch.float16)
                                else dtype)
        with torch.device(device):
            return make()
    try:
        unet = build("unet", lambda: UNet2DConditionModel(unet_cfg))
        vae = build("vae", lambda: AutoencoderKL(vae_cfg))
        text = build("text_encoder", lambda: CLIPTextModel(text_cfg))
    finally:
        torch.set_default_dtype(old)
    return DiffusersAdapter(unet, vae, text, clip_tokenizer(), SCHEDULER, device, dtype, f"random {arch}",
                            base_resolution=base, masters=masters)
