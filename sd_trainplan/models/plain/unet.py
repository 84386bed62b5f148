"""SD1.x/SD2.x's and SDXL's UNet (diffusers' UNet2DConditionModel with the configs those models use).

SD1's configs say `attention_head_dim: 8` and mean 8 heads (a name diffusers kept for old configs):
the heads per block are that number, and a head's width is the block's channels divided by it. SD2
gives one count per block ([5, 10, 20, 20]: 64 channels a head) and projects in and out of the
transformer with Linear layers instead of 1x1 convolutions (`use_linear_projection`).

SDXL (`addition_embed_type: text_time`) adds what time_embeddings.py holds (the pooled text and
size ids as a second embedding added to the timestep's), and stacks several transformer blocks in
one attention (`transformer_layers_per_block`: [1, 2, 10], the middle block takes the last).
"""
from __future__ import annotations

from typing import List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import geglu_fused
from .blocks import Attention, Checkpointed, Config, Downsample2D, ResnetBlock2D, Sample, Saved, Upsample2D
from .time_embeddings import TimestepEmbedding, added_embedding, added_embedding_unsupported, timestep_features

DOWN = ("CrossAttnDownBlock2D", "DownBlock2D")
# diffusers' defaults for the keys read here (a config.json may leave any of them out)
DEFAULTS = {"sample_size": None, "in_channels": 4, "out_channels": 4, "layers_per_block": 2,
            "block_out_channels": [320, 640, 1280, 1280], "down_block_types": [DOWN[0]] * 3 + [DOWN[1]],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, "cross_attention_dim": 1280,
            "attention_head_dim": 8, "norm_num_groups": 32, "norm_eps": 1e-5, "use_linear_projection": False,
            "downsample_padding": 1}
UP = ("CrossAttnUpBlock2D", "UpBlock2D")
# Every other key of a config must be absent or have the value SD's configs have (its default here):
# anything else (class or addition embeddings, other time embeddings, other block kinds...) is
# diffusers' to load.
SD_VALUES = {
    "act_fn": "silu", "center_input_sample": False, "flip_sin_to_cos": True, "freq_shift": 0,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "only_cross_attention": False, "dual_cross_attention": False,
    "reverse_transformer_layers_per_block": None, "encoder_hid_dim": None,
    "encoder_hid_dim_type": None, "num_attention_heads": None, "class_embed_type": None, "num_class_embeds": None,
    "resnet_time_scale_shift": "default", "resnet_skip_time_act": False, "resnet_out_scale_factor": 1.0,
    "time_embedding_type": "positional", "time_embedding_dim": None, "time_embedding_act_fn": None,
    "timestep_post_act": None, "time_cond_proj_dim": None, "conv_in_kernel": 3, "conv_out_kernel": 3,
    "attention_type": "default", "class_embeddings_concat": False,
    "mid_block_only_cross_attention": None, "cross_attention_norm": None, "mid_block_scale_factor": 1,
    "downsample_padding": 1, "dropout": 0.0,
}


def unsupported(config: dict) -> Optional[str]:
    """Why this UNet config is not one of SD1/SD2's or SDXL's (None when it is)."""
    if config.get("_class_name", "UNet2DConditionModel") != "UNet2DConditionModel":
        return f"a {config['_class_name']}"
    for key, value in SD_VALUES.items():
        if key in config and config[key] != value:  # (mid_block_type None: no middle block in diffusers)
            return f"{key} = {config[key]!r}"
    c = {**DEFAULTS, **config}
    kinds = set(c["down_block_types"]) | set(c["up_block_types"])
    if not kinds <= set(DOWN + UP):
        return f"blocks {sorted(kinds - set(DOWN + UP))}"
    depth = c.get("transformer_layers_per_block", 1)  # SDXL's [1, 2, 10]; a list per block needs the reverse too
    if not all(isinstance(d, int) for d in per_block(depth, 1)):
        return f"transformer_layers_per_block = {depth!r}"
    return added_embedding_unsupported(c)


def per_block(value, n: int) -> List:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


class BasicTransformerBlock(Checkpointed):
    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, head_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, head_dim, context_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context) + x
        return self.ff(self.norm3(x)) + x


class GEGLU(nn.Module):
    def __init__(self, dim: int, inner: int):
        super().__init__()
        self.proj = nn.Linear(dim, inner * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.proj(x)
        if geglu_fused.applies(p):  # one pass over the projection, where asked for (geglu_fused.py)
            return geglu_fused.geglu(p)
        h, gate = p.chunk(2, dim=-1)
        return h * F.gelu(gate)


class FeedForward(nn.Module):
    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * mult), nn.Identity(), nn.Linear(dim * mult, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


class AttentionKind(NamedTuple):
    """What a level's transformers are: heads, the text's width, blocks stacked (SDXL: 1, 2 or 10),
    the norm's groups and Linear (SD2, SDXL) or 1x1-conv projections."""
    heads: int
    context_dim: int
    depth: int
    groups: int
    linear: bool


class Transformer2DModel(nn.Module):
    """GroupNorm, project in, transformer blocks over the H*W positions, project out, residual."""

    def __init__(self, ch: int, a: AttentionKind):
        super().__init__()
        self.linear = linear = a.linear
        self.norm = nn.GroupNorm(a.groups, ch, eps=1e-6)
        self.proj_in = nn.Linear(ch, ch) if linear else nn.Conv2d(ch, ch, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(ch, a.heads, ch // a.heads, a.context_dim)
                                                 for _ in range(a.depth)])
        self.proj_out = nn.Linear(ch, ch) if linear else nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.norm(x)
        if not self.linear:
            seq = self.proj_in(seq)
        seq = seq.permute(0, 2, 3, 1).reshape(b, h * w, c)
        if self.linear:
            seq = self.proj_in(seq)
        for block in self.transformer_blocks:
            seq = block(seq, context)
        if self.linear:
            seq = self.proj_out(seq)
        seq = seq.reshape(b, h, w, c).permute(0, 3, 1, 2)  # channels-last strides: what the conv reads best
        return (seq if self.linear else self.proj_out(seq)) + x


class Block(nn.Module):
    """One down or up block: resnets (each followed by a transformer in a cross-attention block),
    then a down- or upsampler."""

    def __init__(self, kind: str, ins: Sequence[int], out: int, temb: int, a: AttentionKind, eps: float,
                 sampler: Optional[str], down_padding: int = 1):
        super().__init__()
        # (registered in diffusers' order, attentions first: parameters() lists them in that order, and
        # so does a checkpoint's optimizer state)
        if kind.startswith("CrossAttn"):
            self.attentions = nn.ModuleList([Transformer2DModel(out, a) for _ in ins])
        else:
            self.attentions = None
        self.resnets = nn.ModuleList([ResnetBlock2D(i, out, temb, a.groups, eps) for i in ins])
        if sampler == "down":
            self.downsamplers = nn.ModuleList([Downsample2D(out, down_padding)])
        elif sampler == "up":
            self.upsamplers = nn.ModuleList([Upsample2D(out)])

    def forward(self, x, temb, context, skips=None, size=None):
        """Down: (x, the outputs the up path takes). Up: pops its skips from `skips` (the last first)."""
        kept = []
        for i, resnet in enumerate(self.resnets):
            if skips is not None:
                x = torch.cat([x, skips.pop()], dim=1)
            x = resnet(x, temb)
            if self.attentions is not None:
                x = self.attentions[i](x, context)
            kept.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            kept.append(x)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x, size)
        return x, kept


class MidBlock(nn.Module):
    def __init__(self, ch: int, temb: int, a: AttentionKind, eps: float):
        super().__init__()
        self.attentions = nn.ModuleList([Transformer2DModel(ch, a)])
        self.resnets = nn.ModuleList([ResnetBlock2D(ch, ch, temb, a.groups, eps) for _ in range(2)])

    def forward(self, x, temb, context):
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, context), temb)


class UNet2DConditionModel(Saved, nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.config = c = Config({**DEFAULTS, **config})
        blocks = list(c.block_out_channels)
        n = len(blocks)
        eps, layers = c.norm_eps, per_block(c.layers_per_block, n)
        kinds = [AttentionKind(*a, c.norm_num_groups, bool(c.use_linear_projection)) for a in zip(
            per_block(c.attention_head_dim, n), per_block(c.cross_attention_dim, n),
            per_block(c.get("transformer_layers_per_block", 1), n))]
        temb = blocks[0] * 4
        self.conv_in = nn.Conv2d(c.in_channels, blocks[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(blocks[0], temb)
        if c.get("addition_embed_type") == "text_time":  # SDXL (time_embeddings.py)
            self.add_embedding = TimestepEmbedding(c.projection_class_embeddings_input_dim, temb)
        self.down_blocks = nn.ModuleList()
        self.up_blocks = nn.ModuleList()  # (before the mid block, as diffusers registers them)
        for i, kind in enumerate(c.down_block_types):
            ins = [blocks[max(i - 1, 0)]] + [blocks[i]] * (layers[i] - 1)
            self.down_blocks.append(Block(kind, ins, blocks[i], temb, kinds[i], eps, "down" if i < n - 1 else None,
                                          c.downsample_padding))
        self.mid_block = MidBlock(blocks[-1], temb, kinds[-1], eps)
        rev, rkinds, rlayers = blocks[::-1], kinds[::-1], layers[::-1]
        for i, kind in enumerate(c.up_block_types):
            prev, out, skip_in = rev[max(i - 1, 0)], rev[i], rev[min(i + 1, n - 1)]
            k = rlayers[i] + 1
            ins = [(prev if j == 0 else out) + (skip_in if j == k - 1 else out) for j in range(k)]
            self.up_blocks.append(Block(kind, ins, out, temb, rkinds[i], eps, "up" if i < n - 1 else None))
        self.conv_norm_out = nn.GroupNorm(c.norm_num_groups, blocks[0], eps=eps)
        self.conv_out = nn.Conv2d(blocks[0], c.out_channels, 3, padding=1)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                added_cond_kwargs: Optional[dict] = None) -> Sample:
        t = torch.as_tensor(timestep, device=sample.device)
        t = t.reshape(-1).expand(sample.shape[0])
        temb = self.time_embedding(timestep_features(t, self.conv_in.out_channels).to(sample.dtype))
        if hasattr(self, "add_embedding"):
            temb = temb + added_embedding(self, temb.dtype, added_cond_kwargs)
        x = self.conv_in(sample)
        skips = [x]
        for block in self.down_blocks:
            x, kept = block(x, temb, encoder_hidden_states)
            skips += kept
        x = self.mid_block(x, temb, encoder_hidden_states)
        factor = 2 ** (len(self.up_blocks) - 1)  # sizes that do not halve evenly: upsample to the skip's size
        uneven = any(s % factor for s in sample.shape[-2:])
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            size = skips[-n - 1].shape[2:] if uneven and i < len(self.up_blocks) - 1 else None
            x, _ = block(x, temb, encoder_hidden_states, skips, size)
        return Sample(self.conv_out(F.silu(self.conv_norm_out(x))))

    def set_gradient_checkpointing(self, on: bool) -> None:
        for m in self.modules():
            if isinstance(m, Checkpointed):
                m.checkpointed = on

    def enable_gradient_checkpointing(self) -> None:
        self.set_gradient_checkpointing(True)

    def disable_gradient_checkpointing(self) -> None:
        self.set_gradient_checkpointing(False)
