"""SD's CLIP text encoders (transformers' CLIPTextModel: SD1's CLIP ViT-L/14 text tower, SD2's OpenCLIP-H
as transformers stores it; CLIPTextModelWithProjection: SDXL's second, OpenCLIP bigG), under
transformers' module names (text_model.embeddings.token_embedding, ..., text_model.final_layer_norm,
text_projection), so Textual Inversion's splice (token_splice.py) and the text LoRA targets find the
same modules. What they return reads as transformers' output does: `[0]` is CLIPTextModel's last
hidden state after the final LayerNorm (SD1, SD2) and CLIPTextModelWithProjection's projected pooled
output; with `output_hidden_states=True`, `.hidden_states[-2]` is the penultimate layer's (SDXL's
conditioning) and `.text_embeds` the projection.

Attention is causal through scaled_dot_product_attention's own `is_causal` instead of an additive
mask of the dtype's lowest value: the same softmax weights (exactly zero above the diagonal), and
the fused kernels may run.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .blocks import Config, Saved

# transformers' CLIPTextConfig defaults for the keys read here (a config.json may leave any of them out)
DEFAULTS = {"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048, "num_hidden_layers": 12,
            "num_attention_heads": 8, "max_position_embeddings": 77, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
            "projection_dim": 512, "eos_token_id": 49407}
ACTIVATIONS = {"quick_gelu": lambda x: x * torch.sigmoid(1.702 * x), "gelu": F.gelu}


def unsupported(config: dict, expected: str = "CLIPTextModel") -> Optional[str]:
    """Why this config is not for the class `expected` here (None when it is)."""
    arch = config.get("architectures") or [expected]
    if arch != [expected] or config.get("model_type", "clip_text_model") != "clip_text_model":
        return f"a {arch[0]}"
    if config.get("hidden_act", "quick_gelu") not in ACTIVATIONS:
        return f"hidden_act = {config['hidden_act']!r}"
    return None


class CLIPAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.k_proj, self.v_proj, self.q_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = (p(x).view(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class CLIPMLP(nn.Module):
    def __init__(self, dim: int, inner: int, act: str):
        super().__init__()
        self.act = ACTIVATIONS[act]
        self.fc1 = nn.Linear(dim, inner)
        self.fc2 = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        dim, eps = c.hidden_size, c.layer_norm_eps
        self.self_attn = CLIPAttention(dim, c.num_attention_heads)
        self.layer_norm1 = nn.LayerNorm(dim, eps=eps)
        self.mlp = CLIPMLP(dim, c.intermediate_size, c.hidden_act)
        self.layer_norm2 = nn.LayerNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPTextEmbeddings(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.token_embedding = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embedding = nn.Embedding(c.max_position_embeddings, c.hidden_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[-1], device=ids.device)  # (transformers keeps them as a buffer)
        return self.token_embedding(ids) + self.position_embedding(positions)[None]


class CLIPEncoder(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.layers = nn.ModuleList([CLIPEncoderLayer(c) for _ in range(c.num_hidden_layers)])


class CLIPTextTransformer(nn.Module):
    def __init__(self, c: Config):
        super().__init__()
        self.eos_token_id = c.eos_token_id
        self.embeddings = CLIPTextEmbeddings(c)
        self.encoder = CLIPEncoder(c)
        self.final_layer_norm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Tuple[torch.Tensor, ...]]:
        """(last hidden state after the final norm, pooled, each layer's input and the last's output)."""
        x = self.embeddings(ids)
        states = [x]
        for layer in self.encoder.layers:
            x = layer(x)
            states.append(x)
        last = self.final_layer_norm(x)
        return last, last[torch.arange(last.shape[0], device=last.device), self.eos_position(ids)], tuple(states)

    def eos_position(self, ids: torch.Tensor) -> torch.Tensor:
        """Where the pooled output is read, as transformers 4.46 reads it: a config with
        `eos_token_id: 2` (written before transformers fixed the id, SDXL's among them) takes the
        highest id of each prompt, as OpenAI's CLIP did (the end token is the vocabulary's last, but a
        Textual Inversion token added after it is higher); a later config the first end token."""
        if self.eos_token_id == 2:
            return ids.to(torch.int).argmax(dim=-1)
        return (ids.to(torch.int) == self.eos_token_id).int().argmax(dim=-1)


class TextOutput(tuple):
    """What transformers' text models return, as far as the adapters read it: fields by name, and
    by position in transformers' order (the fields given, None ones left out)."""

    def __new__(cls, **fields):
        out = super().__new__(cls, [v for v in fields.values() if v is not None])
        out.__dict__.update(fields)
        return out


class CLIPTextModel(Saved, nn.Module):
    weights_file = "model.safetensors"  # transformers' name

    def __init__(self, config: dict):
        super().__init__()
        self.config = Config({**DEFAULTS, **config})
        self.text_model = CLIPTextTransformer(self.config)

    def forward(self, input_ids: torch.Tensor, output_hidden_states: bool = False) -> TextOutput:
        last, pooled, states = self.text_model(input_ids)
        return TextOutput(last_hidden_state=last, pooler_output=pooled,
                          hidden_states=states if output_hidden_states else None)


class CLIPTextModelWithProjection(Saved, nn.Module):
    """SDXL's second text encoder: the pooled output projected (`text_embeds`, without bias)."""
    weights_file = "model.safetensors"

    def __init__(self, config: dict):
        super().__init__()
        self.config = c = Config({**DEFAULTS, **config})
        self.text_model = CLIPTextTransformer(c)
        self.text_projection = nn.Linear(c.hidden_size, c.projection_dim, bias=False)

    def forward(self, input_ids: torch.Tensor, output_hidden_states: bool = False) -> TextOutput:
        last, pooled, states = self.text_model(input_ids)
        return TextOutput(text_embeds=self.text_projection(pooled), last_hidden_state=last,
                          hidden_states=states if output_hidden_states else None)
