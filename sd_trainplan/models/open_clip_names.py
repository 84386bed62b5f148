"""transformers' CLIP text model <-> open_clip's text tower, the layout SD2's and SDXL's single files
store their OpenCLIP text encoder in (ldm's FrozenOpenCLIPEmbedder, sgm's FrozenOpenCLIPEmbedder2):
q, k, v stacked into `attn.in_proj_weight`/`in_proj_bias`, layer_norm1/2 -> ln_1/2, mlp.fc1/fc2 ->
mlp.c_fc/c_proj, final_layer_norm -> ln_final, the position table as `positional_embedding`, the
projection (SDXL's) as a matrix (`x @ text_projection`: the Linear's weight transposed), and
open_clip's `logit_scale` (unused by the text; its initial value).
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Optional, Tuple

import torch

LAYER = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
         "self_attn.out_proj": "attn.out_proj"}
QKV = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj")


def open_clip_state(text: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A CLIPTextModel(WithProjection)'s state dict -> open_clip's text tower's."""
    out: Dict[str, torch.Tensor] = {}
    qkv: Dict[str, Dict[str, torch.Tensor]] = {}
    for k, v in text.items():
        if k.endswith("position_ids"):
            continue
        if k == "text_projection.weight":
            out["text_projection"] = v.t().contiguous()
            continue
        where, how = open_clip_key(k)
        if how is None:
            out[where] = v
        else:
            qkv.setdefault(where, {})[how] = v
    for name, parts in qkv.items():
        out[name] = torch.cat([parts["q"], parts["k"], parts["v"]])
    some = next(iter(out.values()))
    out["logit_scale"] = torch.tensor(math.log(1 / 0.07), dtype=some.dtype, device=some.device)
    return out


def open_clip_key(k: str) -> Tuple[str, Optional[str]]:
    """(open_clip's key holding transformers' parameter `k`, and which third of it: 'q', 'k' or 'v'
    of a stacked in_proj; None when it is the whole tensor)."""
    if k == "text_model.embeddings.token_embedding.weight":
        return "token_embedding.weight", None
    if k == "text_model.embeddings.position_embedding.weight":
        return "positional_embedding", None
    if k.startswith("text_model.final_layer_norm."):
        return "ln_final." + k.rsplit(".", 1)[1], None
    if k.startswith("text_model.encoder.layers."):
        i, rest = k[len("text_model.encoder.layers."):].split(".", 1)
        layer, kind = rest.rsplit(".", 1)
        pre = f"transformer.resblocks.{i}."
        if layer in QKV:
            return f"{pre}attn.in_proj_{kind}", layer[10]
        if layer in LAYER:
            return pre + LAYER[layer] + "." + kind, None
    raise KeyError(f"no open_clip name for text encoder key {k}")


def reader(k: str) -> Tuple[str, Callable[[torch.Tensor], torch.Tensor]]:
    """(open_clip's key, how to take transformers' tensor `k` out of it)."""
    key, third = open_clip_key(k)
    if third is None:
        return key, lambda t: t
    i = "qkv".index(third)
    return key, lambda t: t.chunk(3, dim=0)[i].clone()  # (its own memory, not a view of all three)
