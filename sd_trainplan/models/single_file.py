"""Single-file checkpoints offline: detect the architecture from the file's keys and shapes, write
the matching diffusers configs (shipped here, nothing fetched), and load with diffusers' own
`from_single_file(config=...)`.

Known architectures: SD1.x, SD2.x (OpenCLIP text encoder; 512 eps "base" and 768 v), and the
built-in tiny model. SD2 files do not say whether they predict eps or v; like the WebUI, we
decide by what the UNet predicts for a nearly pure-noise input (an eps model returns it).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from .clip_vocab import default_cache_dir, write_tokenizer_files
from .plain.parts import with_class_names
from .tiny_diffusers import MODEL_INDEX, SCHEDULER, TEXT, UNET, VAE

SD_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
               block_out_channels=(320, 640, 1280, 1280),
               down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
               up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3, cross_attention_dim=768,
               attention_head_dim=8, norm_num_groups=32)
SD2_UNET = dict(SD_UNET, cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True)
SD_VAE = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
              down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
              layers_per_block=2, norm_num_groups=32, sample_size=512, scaling_factor=0.18215)
SD1_TEXT = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768, bos_token_id=0,
                eos_token_id=2, pad_token_id=1)
SD2_TEXT = dict(SD1_TEXT, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                hidden_act="gelu", projection_dim=512)

ARCHS = {  # name: (unet, vae, text, tokenizer pad token, base resolution)
    "sd1": (SD_UNET, SD_VAE, SD1_TEXT, "<|endoftext|>", 512),
    "sd2": (SD2_UNET, SD_VAE, SD2_TEXT, "!", 512),
    "sd2v": (dict(SD2_UNET, sample_size=96), dict(SD_VAE, sample_size=768), SD2_TEXT, "!", 768),
    "tiny": (UNET, VAE, TEXT, "<|endoftext|>", 64),
}


def read_shapes(path: Path) -> Dict[str, Tuple[int, ...]]:
    """Tensor shapes by key, without loading the weights (safetensors), or from a .ckpt."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    return {k: tuple(v.shape) for k, v in sd.items() if hasattr(v, "shape")}


def detect(shapes: Dict[str, Tuple[int, ...]]) -> str:
    conv_in = shapes.get("model.diffusion_model.input_blocks.0.0.weight")
    if conv_in is None:
        raise ValueError("not a Stable Diffusion checkpoint (no model.diffusion_model.input_blocks.0.0.weight)")
    if conv_in[0] == UNET["block_out_channels"][0]:
        return "tiny"
    if conv_in[0] != 320 or conv_in[1] != 4:
        raise ValueError(f"unknown UNet (conv_in {conv_in}); SD1.x and SD2.x single files are supported"
                         " (SDXL: give a diffusers SDXL folder, or train it in the WebUI)")
    if any(k.startswith("cond_stage_model.model.") for k in shapes):
        return "sd2"  # eps or v decided after loading
    return "sd1"


def write_config_folder(arch: str, prediction_type: str) -> Path:
    unet, vae, text, pad, _ = ARCHS[arch]
    folder = default_cache_dir() / "configs" / f"{arch}-{prediction_type}"
    if (folder / "model_index.json").is_file():
        return folder
    for sub, cfg in zip(("unet", "vae", "text_encoder"), with_class_names(unet, vae, text)):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / "config.json").write_text(json.dumps(cfg))
    tok = write_tokenizer_files(folder / "tokenizer")
    special = json.loads((tok / "special_tokens_map.json").read_text())
    special["pad_token"] = pad
    (tok / "special_tokens_map.json").write_text(json.dumps(special))
    tcfg = json.loads((tok / "tokenizer_config.json").read_text())
    tcfg["pad_token"] = pad
    (tok / "tokenizer_config.json").write_text(json.dumps(tcfg))
    (folder / "scheduler").mkdir(parents=True, exist_ok=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps(
        {"_class_name": "DDIMScheduler", **SCHEDULER, "prediction_type": prediction_type}))
    (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX))
    return folder


@torch.no_grad()
def predicts_v(unet, cross_dim: int) -> bool:
    """An eps model returns (nearly) its input at the noisiest timestep; a v model does not."""
    g = torch.Generator().manual_seed(0)
    w = next(unet.parameters())  # (diffusers' UNet has .device and .dtype; the plain one does not)
    x = torch.randn(1, 4, 8, 8, generator=g).to(w.device, w.dtype)
    c = torch.zeros(1, 77, cross_dim, device=w.device, dtype=w.dtype)
    out = unet(x, torch.tensor([999], device=w.device), encoder_hidden_states=c).sample.float()
    cos = torch.nn.functional.cosine_similarity(out.flatten(), x.float().flatten(), dim=0).item()
    return cos < 0.5


def config_for(path: Path, prediction_type: Optional[str] = None) -> Tuple[str, Path, int]:
    """(architecture, config folder, base resolution) for a single-file checkpoint."""
    arch = detect(read_shapes(path))
    pt = prediction_type or "epsilon"
    return arch, write_config_folder(arch, pt), ARCHS[arch][4]
