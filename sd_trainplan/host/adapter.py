"""The ldm adapter over the WebUI's loaded model (`shared.sd_model`), as it is.

No second load, no conversion: `LdmAdapter(place=False)` takes the model's devices and dtypes
as the WebUI set them. Two things differ from the standalone ldm adapter:
- Textual Inversion: the new vectors reach the text encoder the way the WebUI's own trainer
  does it (modules/textual_inversion/textual_inversion.py, v1.10.1): an `Embedding` whose `vec`
  is the trained parameter, registered in `model_hijack.embedding_db`; the hijacked CLIP
  (FrozenCLIPEmbedderWithCustomWords) finds its name in a prompt and `EmbeddingsWithFixes`
  splices the vectors in. The tokenizer and the embedding matrix are never touched, and the
  prompt weights, clip skip and long prompts work as in txt2img.
- The noise schedule: `alphas_cumprod_original` (the checkpoint's), since the WebUI may leave
  the `alphas_cumprod` buffer downcast or rescaled (zero terminal SNR) by its last generation;
  and a Dreambooth export writes plain ldm key names (the hijack's wrappers removed).
"""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from ..models.ldm_adapter import LdmAdapter
from .embedding_tokens import A1111EmbeddingDb, DbToken


class WebUiLdmAdapter(A1111EmbeddingDb, LdmAdapter):
    def __init__(self, model, device, embedding_db, embedding_class, on_token=None, source: str = ""):
        super().__init__(model, device=device, source=source or "the WebUI's loaded model", place=False)
        original = getattr(model, "alphas_cumprod_original", None)
        if original is not None:
            self.alphas_cumprod = original.detach().to(self.device, torch.float32).clone()
        self.embedding_db = embedding_db
        self.embedding_class = embedding_class
        self.on_token = on_token  # called with each token added, so the run can take it out at the end
        self.tokens = []

    def encode_prompts(self, prompts):
        """The WebUI's CLIP, after making sure the run's embeddings are still registered: a refresh
        of the Textual Inversion cards reloads the database from disk mid-run, which would drop them
        (and the prompt would silently train nothing)."""
        self.keep_registered()
        return super().encode_prompts(prompts)

    def add_token(self, token: str, n_vectors: int, init_word: str) -> DbToken:
        """An Embedding in the WebUI's database, initialised as the WebUI's create_embedding does:
        vector i is the init text's token embedding number i * len // n."""
        self.refuse_taken(token)
        cs = self.model.cond_stage_model
        with torch.no_grad():
            init = cs.encode_embedding_init_text(init_word or "*", n_vectors)
        vec = torch.zeros((n_vectors, init.shape[1]), device=self.device, dtype=torch.float32)
        with torch.no_grad():
            for i in range(n_vectors):
                vec[i] = init[i * int(init.shape[0]) // n_vectors]
        return self.register_new(DbToken, self.embedding_class, nn.Parameter(vec), token, n_vectors, int(init.shape[1]))

    def checkpoint_state(self) -> Dict[str, torch.Tensor]:
        """Plain ldm keys: the hijack's wrappers (cond_stage_model.wrapped, token_embedding.wrapped)
        are not in a checkpoint the WebUI loads; the checkpoint's own noise schedule."""
        out = {}
        for k, v in self.model.state_dict().items():
            k = k.replace("cond_stage_model.wrapped.", "cond_stage_model.").replace(".token_embedding.wrapped.",
                                                                                  ".token_embedding.")
            out[k] = v
        original = getattr(self.model, "alphas_cumprod_original", None)
        if original is not None and "alphas_cumprod" in out:
            out["alphas_cumprod"] = original
        return out

    def describe(self) -> str:
        n = sum(p.numel() for p in self.unet().parameters()) / 1e6
        return f"{self.source} (UNet {n:.1f}M params, {str(self.dtype).replace('torch.', '')}, {self.prediction_type})"
