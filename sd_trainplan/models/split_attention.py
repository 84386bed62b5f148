"""nn.MultiheadAttention's four projections as separate Linear layers, so a LoRA can attach to each.

open_clip's text tower (SDXL's second text encoder) runs its attention through
nn.MultiheadAttention, which multiplies by one fused `in_proj_weight` (q, k, v stacked) inside
`F.multi_head_attention_forward`: no q/k/v Linear is ever called, so no forward hook can add a
LoRA to them. kohya's SDXL LoRAs still name them (lora_te2_..._self_attn_{q,k,v,out}_proj), and
the WebUI's Lora extension merges exactly those four into `in_proj_weight` and `out_proj`.

`split(mha)` gives four `Projection`s (nn.Linear whose weight and bias are read, at each call,
as slices of the attention's own tensors: nothing is copied or registered in the model) and
gives the attention instance a forward that runs through them. While none of them has a hook,
that forward is the module's own (bit for bit as before); with hooks, it computes the same
attention unfused (q, k, v, then torch's scaled_dot_product_attention, then out), so each
projection's LoRA is added where the WebUI will merge it. Deleting the instance `forward` puts
the module back (the host's ModelFlags does that at the end of a run).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import nn
from torch.nn import functional as F

NAMES = ("q", "k", "v", "out")


class Projection(nn.Linear):
    """One of q, k, v (rows of in_proj_weight) or out (out_proj) of an attention, as a Linear."""

    def __init__(self, mha: nn.MultiheadAttention, which: str):
        d = mha.embed_dim
        nn.Module.__init__(self)
        self.in_features, self.out_features = d, d
        self.__dict__["_mha"] = mha  # not a submodule: the attention stays the model's
        self._rows = None if which == "out" else slice("qkv".index(which) * d, ("qkv".index(which) + 1) * d)

    @property
    def weight(self) -> torch.Tensor:
        mha = self.__dict__["_mha"]
        return mha.out_proj.weight if self._rows is None else mha.in_proj_weight[self._rows]

    @property
    def bias(self) -> Optional[torch.Tensor]:
        mha = self.__dict__["_mha"]
        if self._rows is None:
            return mha.out_proj.bias
        return None if mha.in_proj_bias is None else mha.in_proj_bias[self._rows]


def split(mha: nn.MultiheadAttention) -> Dict[str, Projection]:
    """The attention's projections by name (q, k, v, out); its forward now runs through them."""
    if getattr(mha, "_qkv_same_embed_dim", True) is False:
        raise ValueError("an attention with separate q/k/v weights has no fused in_proj_weight to split")
    parts = {n: Projection(mha, n) for n in NAMES}
    original = type(mha).forward

    def forward(query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if not any(p._forward_hooks for p in parts.values()) or key_padding_mask is not None or need_weights:
            return original(mha, query, key, value, key_padding_mask=key_padding_mask, need_weights=need_weights,
                            attn_mask=attn_mask, average_attn_weights=average_attn_weights, is_causal=is_causal)
        if mha.batch_first:  # to (L, N, E), as open_clip calls it
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        h = mha.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:  # (L, N, E) -> (N, h, L, E/h)
            L, N, E = t.shape
            return t.reshape(L, N, h, E // h).permute(1, 2, 0, 3)
        q, k, v = heads(parts["q"](query)), heads(parts["k"](key)), heads(parts["v"](value))
        if attn_mask is not None and attn_mask.dtype == torch.bool:
            attn_mask = ~attn_mask  # nn.MultiheadAttention: True = masked; SDPA: True = attend
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=0.0, is_causal=is_causal)
        N, _, L, d = o.shape
        out = parts["out"](o.permute(2, 0, 1, 3).reshape(L, N, h * d))
        return (out.transpose(0, 1) if mha.batch_first else out), None

    mha.forward = forward
    return parts
