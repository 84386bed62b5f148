"""The pieces the plain UNet and VAE share: the resnet block, the down- and upsamplers, attention,
and the config object the adapter reads (`.config.layers_per_block` and the like).

Module and parameter names are diffusers' (resnets.0.norm1, downsamplers.0.conv, to_out.0, ...), so a
folder's safetensors file is exactly a module's state dict. Two copies diffusers makes are left out,
with the same values: `.contiguous()` before the 1x1 shortcut conv and after the transformer's
output permute (each turned channels-last activations back into NCHW, a copy and a slower
convolution), and the round trip through fp32 around the nearest-neighbour upsampling (which only
copies values, so bf16 in gives the same bf16 out).
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


class Config(dict):
    """A part's config.json as read (attribute access, like diffusers' FrozenDict)."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def read_config(part_dir: Path) -> dict:
    return json.loads((Path(part_dir) / "config.json").read_text())


@contextmanager
def uninitialised():
    """Build on the meta device without initialising any weight (the file's tensors replace them).
    Initialising a meta tensor runs torch's Python reference kernels, and those import torch._dynamo,
    the very import these models exist to avoid. Only the layer kinds the plain models use."""
    kinds = (nn.Linear, nn.Conv2d, nn.Embedding, nn.LayerNorm, nn.GroupNorm)
    saved = [k.__dict__.get("reset_parameters") for k in kinds]
    for k in kinds:
        k.reset_parameters = lambda self: None
    try:
        with torch.device("meta"):
            yield
    finally:
        for k, f in zip(kinds, saved):
            if f is None:
                del k.reset_parameters
            else:
                k.reset_parameters = f


class Saved:
    """`from_folder_config` and `save_pretrained` for a part of a diffusers folder: its config.json
    and one safetensors file (what diffusers and transformers write, and read back)."""
    weights_file = "diffusion_pytorch_model.safetensors"

    @classmethod
    def from_folder_config(cls, part_dir: Path):
        return cls(read_config(part_dir))

    def save_pretrained(self, part_dir) -> None:
        from safetensors.torch import save_file
        part_dir = Path(part_dir)
        part_dir.mkdir(parents=True, exist_ok=True)
        (part_dir / "config.json").write_text(json.dumps(dict(self.config), indent=1))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(part_dir / self.weights_file),
                  metadata={"format": "pt"})  # (transformers refuses a file without it)


class Sample(NamedTuple):  # what the library models return: `.sample`
    sample: torch.Tensor


class Checkpointed(nn.Module):
    """A block whose forward is recomputed in the backward pass while `checkpointed` is on (gradient
    checkpointing: activations are not kept), as diffusers does per resnet and transformer block."""
    checkpointed = False

    def __call__(self, *args):
        if self.checkpointed and torch.is_grad_enabled():
            return checkpoint(super().__call__, *args, use_reentrant=False)
        return super().__call__(*args)


class ResnetBlock2D(Checkpointed):
    def __init__(self, in_ch: int, out_ch: int, temb_ch: Optional[int], groups: int, eps: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch, eps=eps)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_emb_proj = nn.Linear(temb_ch, out_ch) if temb_ch else None
        self.norm2 = nn.GroupNorm(groups, out_ch, eps=eps)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor, temb: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.time_emb_proj is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Downsample2D(nn.Module):
    def __init__(self, ch: int, padding: int):
        super().__init__()
        self.padding = padding
        self.conv = nn.Conv2d(ch, ch, 3, stride=2, padding=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.padding == 0:  # the VAE's: pad right and bottom only
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample2D(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor, size=None) -> torch.Tensor:
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


class Attention(nn.Module):
    """Multi-head attention over [B, N, C] (torch's scaled_dot_product_attention); with `groups`, the
    VAE's kind: over a [B, C, H, W] map, group-normed first, with a residual."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: Optional[int] = None,
                 bias: bool = False, groups: Optional[int] = None, eps: float = 1e-6):
        super().__init__()
        inner = heads * head_dim
        self.heads = heads
        self.group_norm = nn.GroupNorm(groups, dim, eps=eps) if groups else None
        self.to_q = nn.Linear(dim, inner, bias=bias)
        self.to_k = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_v = nn.Linear(context_dim or dim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, dim), nn.Identity()])  # [1] is diffusers' dropout

    def attend(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        context = x if context is None else context
        b = x.shape[0]
        q, k, v = (t.view(b, -1, self.heads, t.shape[-1] // self.heads).transpose(1, 2)
                   for t in (self.to_q(x), self.to_k(context), self.to_v(context)))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out[0](out.transpose(1, 2).reshape(b, -1, out.shape[1] * out.shape[3]).to(q.dtype))

    def forward(self, x: torch.Tensor, context: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.group_norm is None:
            return self.attend(x, context)
        b, c, h, w = x.shape
        seq = self.group_norm(x).view(b, c, h * w).transpose(1, 2)
        return self.attend(seq).transpose(1, 2).reshape(b, c, h, w) + x
