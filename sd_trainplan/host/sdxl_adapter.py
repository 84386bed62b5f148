"""The sgm adapter over the WebUI's loaded SDXL model (`shared.sd_model`, a DiffusionEngine), as it is.

What differs from the standalone SgmAdapter, as WebUiLdmAdapter differs from LdmAdapter (adapter.py):
- Textual Inversion: an SDXL embedding holds one set of vectors per text encoder, a dict
  {"clip_l": n x 768, "clip_g": n x 1280} (modules/textual_inversion/textual_inversion.py,
  create_embedding_from_data). The run registers an `Embedding` whose `vec` is that dict of
  trained parameters in `model_hijack.embedding_db`; the WebUI's two hijacked encoders find its
  name in a prompt and their `EmbeddingsWithFixes` (textual_inversion_key 'clip_l' and 'clip_g',
  modules/sd_hijack.py) splice each encoder's own vectors in. Initial vectors come from each
  encoder's `encode_embedding_init_text` (the WebUI's own create_embedding concatenates the two and
  so cannot make an SDXL embedding; the Train tab never trained one).
- The noise schedule: `alphas_cumprod_original` (modules/sd_models_xl.py extend_sdxl, then
  sd_models.load_model_weights), whatever the last generation left in `alphas_cumprod`.
- A Dreambooth export: plain sgm key names (the hijack's `.wrapped.` wrappers out) and no copy of
  the conditioner under `cond_stage_model.` (the hijack sets it as the model's cond_stage_model).
"""
from __future__ import annotations

from typing import Dict, List, Optional

import torch
from torch import nn

from ..models.sgm_adapter import SDXL_BASE_RESOLUTION, TI_KEYS, SgmAdapter
from .embedding_tokens import A1111EmbeddingDb


class SdxlToken:
    """Textual Inversion vectors of an SDXL embedding in the WebUI's database: one parameter per
    text encoder, under the names the WebUI's embedding files use."""

    def __init__(self, name: str, parts: Dict[str, nn.Parameter], embedding):
        self.token = name
        self.parts = parts
        self.embedding = embedding

    @property
    def vectors(self) -> torch.Tensor:
        return torch.cat([p.detach() for p in self.parts.values()], dim=1)

    @property
    def prompt_text(self) -> str:
        return self.token


def ti_key(embedder: nn.Module, index: int) -> str:
    """The key the WebUI's EmbeddingsWithFixes inside this encoder reads from an embedding's vec dict."""
    for m in embedder.modules():
        key = getattr(m, "textual_inversion_key", None)
        if isinstance(key, str):
            return key
    return TI_KEYS[index]


def sdxl_problems(model) -> List[str]:
    """Why the loaded DiffusionEngine cannot be trained (empty: it can): what SgmAdapter would refuse."""
    try:
        SgmAdapter.check(model)
    except (ValueError, AttributeError) as e:  # AttributeError: no denoiser, no embedders: not sgm's SDXL
        return [str(e) if isinstance(e, ValueError) else f"model: the loaded {type(model).__name__} is not an SDXL"
                f" DiffusionEngine this can train ({e})"]
    return []


def resolution_note(model, cfg) -> Optional[str]:
    """Said at the start of a run on SDXL below its base resolution (the planner's RES_B 1024)."""
    if not hasattr(model, "conditioner") or cfg.resolution >= SDXL_BASE_RESOLUTION:
        return None
    return (f"the loaded model is SDXL, made for {SDXL_BASE_RESOLUTION} px: this run trains at {cfg.resolution} px"
            f" (the planner's figures for SDXL take RES_B = {SDXL_BASE_RESOLUTION})")


class WebUiSgmAdapter(A1111EmbeddingDb, SgmAdapter):
    def __init__(self, model, device, embedding_db, embedding_class, on_token=None, source: str = ""):
        super().__init__(model, device=device, source=source or "the WebUI's loaded SDXL model", place=False)
        original = getattr(model, "alphas_cumprod_original", None)
        if original is not None:
            self.alphas_cumprod = original.detach().to(self.device, torch.float32).clone()
        self.embedding_db = embedding_db
        self.embedding_class = embedding_class
        self.on_token = on_token
        self.tokens: List[SdxlToken] = []

    def encode_prompts(self, prompts):
        """The WebUI's encoders, after putting the run's embeddings back in the database if a refresh
        of the Textual Inversion cards took them out mid-run (see WebUiLdmAdapter.encode_prompts)."""
        self.keep_registered()
        return super().encode_prompts(prompts)

    def add_token(self, token: str, n_vectors: int, init_word: str) -> SdxlToken:
        """An SDXL Embedding in the WebUI's database; each encoder's vector i is its init-text token
        embedding number i * len // n, as the WebUI's create_embedding picks them."""
        self.refuse_taken(token)
        parts: Dict[str, nn.Parameter] = {}
        with torch.no_grad():
            for i, e in enumerate(self.text_embedders):
                init = e.encode_embedding_init_text(init_word or "*", n_vectors)
                rows = [init[j * int(init.shape[0]) // n_vectors] for j in range(n_vectors)]
                parts[ti_key(e, i)] = nn.Parameter(torch.stack(rows).to(self.device, torch.float32))
        return self.register_new(SdxlToken, self.embedding_class, parts, token, n_vectors,
                                 sum(int(p.shape[1]) for p in parts.values()))

    def checkpoint_state(self) -> Dict[str, torch.Tensor]:
        out = {}
        for k, v in self.model.state_dict().items():
            if k.startswith("cond_stage_model."):
                continue  # the conditioner again, under the name the hijack gave it
            out[k.replace(".wrapped.", ".") if k.startswith("conditioner.") else k] = v
        return out

    def describe(self) -> str:
        n = sum(p.numel() for p in self.unet().parameters()) / 1e6
        return f"{self.source} (SDXL, UNet {n:.1f}M params, {str(self.dtype).replace('torch.', '')}, {self.prediction_type})"
