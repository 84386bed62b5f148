"""Textual Inversion vectors outside the WebUI: new tokens spliced into a CLIP text encoder.

The tokenizer learns the new token strings; the text model's token embedding is wrapped so
ids past the original vocabulary read from the new vectors. The original embedding matrix is
never resized or written, so every base weight stays bit-identical.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch
from torch import nn


class SplicedEmbedding(nn.Module):
    def __init__(self, base: nn.Embedding):
        super().__init__()
        self.base = base
        self.vocab = base.num_embeddings
        self.extras = nn.ParameterList()

    @property
    def weight(self) -> torch.Tensor:  # some callers read .weight (e.g. to get the dtype/device)
        return self.base.weight

    def add(self, vectors: torch.Tensor) -> nn.Parameter:
        p = nn.Parameter(vectors.detach().clone().float())
        self.extras.append(p)
        return p

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = self.base(ids.clamp(max=self.vocab - 1))
        if len(self.extras) == 0:
            return out
        table = torch.cat(list(self.extras), dim=0).to(out.dtype)
        mask = (ids >= self.vocab).unsqueeze(-1)
        idx = (ids - self.vocab).clamp(min=0, max=table.shape[0] - 1)
        return torch.where(mask, table[idx], out)


@dataclass
class SplicedToken:
    token: str
    ids: List[int]
    vectors: nn.Parameter

    @property
    def prompt_text(self) -> str:
        return " ".join(token_strings(self.token, len(self.ids)))


def token_strings(token: str, n: int) -> List[str]:
    return [token] + [f"{token}_{i}" for i in range(1, n)]


def splice_token(tokenizer, text_model: nn.Module, token: str, n_vectors: int, init_word: str) -> SplicedToken:
    """Add `token` with n vectors, each initialised from the init word's embedding (cycled)."""
    emb_holder = text_model.text_model.embeddings
    if not isinstance(emb_holder.token_embedding, SplicedEmbedding):
        emb_holder.token_embedding = SplicedEmbedding(emb_holder.token_embedding)
    spliced: SplicedEmbedding = emb_holder.token_embedding
    names = token_strings(token, n_vectors)
    for name in names:
        if tokenizer.convert_tokens_to_ids(name) != tokenizer.unk_token_id or name in tokenizer.get_vocab():
            raise ValueError(f"token: '{name}' is already a word the tokenizer knows; choose a new token")
    init_ids = tokenizer(init_word, add_special_tokens=False).input_ids
    if not init_word.strip() or not init_ids:
        raise ValueError(f"init_word: '{init_word}' has no tokens; give a word such as 'person' or 'style'")
    with torch.no_grad():
        base = spliced.base.weight[torch.tensor(init_ids, device=spliced.base.weight.device)].float()
        init = base[torch.arange(n_vectors) % base.shape[0]]
    first = spliced.vocab + sum(p.shape[0] for p in spliced.extras)
    tokenizer.add_tokens(names)
    ids = [tokenizer.convert_tokens_to_ids(n) for n in names]
    if ids != list(range(first, first + n_vectors)):
        raise RuntimeError(f"tokenizer gave ids {ids} for {names}, expected {first}..")
    return SplicedToken(token, ids, spliced.add(init))
