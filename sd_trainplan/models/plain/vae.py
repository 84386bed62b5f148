"""SD's VAE (diffusers' AutoencoderKL with SD's configs): `encode(x).latent_dist` (mean, std) and
`decode(z).sample`, under diffusers' module names."""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Attention, Config, Downsample2D, ResnetBlock2D, Sample, Saved, Upsample2D

EPS = 1e-6  # the VAE's norms (diffusers fixes it for the encoder and decoder whatever the config says)
# diffusers' defaults for the keys read here (a config.json may leave any of them out)
DEFAULTS = {"in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [64],
            "down_block_types": ["DownEncoderBlock2D"], "up_block_types": ["UpDecoderBlock2D"],
            "layers_per_block": 1, "norm_num_groups": 32, "sample_size": 32, "scaling_factor": 0.18215}
SD_VALUES = {"act_fn": "silu", "use_quant_conv": True, "use_post_quant_conv": True, "mid_block_add_attention": True,
             "norm_type": "group", "shift_factor": None, "latents_mean": None, "latents_std": None}


def unsupported(config: dict) -> Optional[str]:
    if config.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        return f"a {config['_class_name']}"
    for key, value in SD_VALUES.items():
        if key in config and config[key] != value:
            return f"{key} = {config[key]!r}"
    c = {**DEFAULTS, **config}
    if set(c["down_block_types"]) != {"DownEncoderBlock2D"} or set(c["up_block_types"]) != {"UpDecoderBlock2D"}:
        return "blocks other than DownEncoderBlock2D/UpDecoderBlock2D"
    return None


class Gaussian(NamedTuple):
    mean: torch.Tensor
    std: torch.Tensor


class Encoded(NamedTuple):
    latent_dist: Gaussian


class MidBlock(nn.Module):
    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.attentions = nn.ModuleList([Attention(ch, 1, ch, bias=True, groups=groups, eps=EPS)])
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, None, groups, EPS) for _ in range(2)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class CoderBlock(nn.Module):
    """DownEncoderBlock2D (resnets, then a downsampler) or UpDecoderBlock2D (resnets, then an upsampler)."""

    def __init__(self, ins_out, n: int, groups: int, sampler: Optional[str]):
        super().__init__()
        cin, out = ins_out
        self.resnets = nn.ModuleList([ResnetBlock2D(cin if i == 0 else out, out, None, groups, EPS) for i in range(n)])
        if sampler == "down":
            self.downsamplers = nn.ModuleList([Downsample2D(out, padding=0)])
        elif sampler == "up":
            self.upsamplers = nn.ModuleList([Upsample2D(out)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for r in self.resnets:
            x = r(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x)
        return x


class Encoder(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        blocks, groups, n = list(c.block_out_channels), c.norm_num_groups, len(c.block_out_channels)
        self.conv_in = nn.Conv2d(c.in_channels, blocks[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([CoderBlock((blocks[max(i - 1, 0)], blocks[i]), c.layers_per_block,
                                                     groups, "down" if i < n - 1 else None) for i in range(n)])
        self.mid_block = MidBlock(blocks[-1], groups)
        self.conv_norm_out = nn.GroupNorm(groups, blocks[-1], eps=EPS)
        self.conv_out = nn.Conv2d(blocks[-1], 2 * c.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(self.mid_block(x))))


class Decoder(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        blocks, groups, n = list(c.block_out_channels), c.norm_num_groups, len(c.block_out_channels)
        rev = blocks[::-1]
        self.conv_in = nn.Conv2d(c.latent_channels, blocks[-1], 3, padding=1)
        self.up_blocks = nn.ModuleList([CoderBlock((rev[max(i - 1, 0)], rev[i]), c.layers_per_block + 1,
                                                   groups, "up" if i < n - 1 else None) for i in range(n)])
        self.mid_block = MidBlock(blocks[-1], groups)  # (after the up blocks: diffusers' parameter order)
        self.conv_norm_out = nn.GroupNorm(groups, blocks[0], eps=EPS)
        self.conv_out = nn.Conv2d(blocks[0], c.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z)).to(self.up_blocks[0].resnets[0].conv1.weight.dtype)
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKL(Saved, nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.config = c = Config({**DEFAULTS, **config})
        latent = c.latent_channels
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.quant_conv = nn.Conv2d(2 * latent, 2 * latent, 1)
        self.post_quant_conv = nn.Conv2d(latent, latent, 1)

    def encode(self, x: torch.Tensor) -> Encoded:
        mean, logvar = self.quant_conv(self.encoder(x)).chunk(2, dim=1)
        return Encoded(Gaussian(mean, torch.exp(0.5 * logvar.clamp(-30.0, 20.0))))

    def decode(self, z: torch.Tensor) -> Sample:
        return Sample(self.decoder(self.post_quant_conv(z)))
