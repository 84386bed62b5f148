"""The model adapter over Forge's loaded SD1.x model (`shared.sd_model`, a
`backend.diffusion_engine.sd15.StableDiffusion`), behind the same protocol as the ldm one.

It reaches the parts the way Forge's own engine does, never through the engine's
`@torch.inference_mode()` methods (their outputs could not train) and never through Forge's
memory manager (which may move or swap weights mid-run); forge_session.py loads the parts once
and makes their tensors trainable for the run:
- conditioning: the engine's `text_processing_engine` (backend/text_processing/classic_engine.py),
  so prompt weights, emphasis, clip skip and long prompts are as in txt2img;
- Textual Inversion: an `Embedding` registered in that engine's `EmbeddingDatabase`, whose
  `CLIPEmbeddingForTextualInversion` splices the vectors in with torch.cat (differentiable);
- latents: the VAE (`forge_objects.vae.first_stage_model`) with Forge's own scaling
  (`process_in` / `process_out`, as StableDiffusion.encode_first_stage does);
- the noise schedule and prediction type: the UNet's predictor (`KModel.predictor`);
- the UNet: `IntegratedUNet2DConditionModel` called as KModel.apply_model calls it, with integer
  timesteps (ldm key layout, so LoRA keys are the kohya names Forge's loader maps).
Host path: Forge's Python 3.11 / torch 2.3; imports Forge's `backend` only inside functions.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import nn

from ..models.ldm_adapter import checkpoint_blocks, ldm_lora_targets, timestep_table_on_device
from .embedding_tokens import DbToken, EmbeddingDbTokens


class ForgeAdapter(EmbeddingDbTokens):
    family = "forge"
    host_title = "Forge"

    def __init__(self, engine, device, source: str = ""):
        fo = engine.forge_objects
        self.engine = engine
        self.text_engine = engine.text_processing_engine
        self.kmodel = fo.unet.model
        self.vae_model = fo.vae.first_stage_model
        self.clip = fo.clip.cond_stage_model.clip_l  # IntegratedCLIP: .transformer is transformers' CLIPTextModel
        self.device = torch.device(device)
        self.source = source or "Forge's loaded model"
        self.dtype = next(self.unet().parameters()).dtype
        predictor = self.kmodel.predictor
        self.prediction_type = predictor.prediction_type
        self.alphas_cumprod = predictor.alphas_cumprod.detach().to(self.device, torch.float32).clone()
        self.latent_scale = int(fo.vae.downscale_ratio)
        self.base_resolution = 512  # SD1.x, the engine this adapter is given (forge_model.TRAINS)
        self.tokens: List[DbToken] = []
        self.on_token = None  # called with each token added, so the run can take it out at the end
        self._checkpointed: List[nn.Module] = []

    # --- the parts ------------------------------------------------------------------------------
    def unet(self) -> nn.Module:
        return self.kmodel.diffusion_model

    def text_encoder(self) -> nn.Module:
        return self.clip.transformer

    def vae(self) -> nn.Module:
        return self.vae_model

    # --- the protocol ---------------------------------------------------------------------------
    def encode_images(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """[-1, 1] images -> (mean, std) of the scaled latent distribution (Forge's VAE.encode_inner
        calls first_stage_model.encode; process_in is StableDiffusion.encode_first_stage's scaling)."""
        vae = self.vae_model
        p = next(vae.parameters())
        with torch.no_grad():
            post = vae.encode(pixels.to(p.device, p.dtype), regulation=lambda dist: dist)
            mean = vae.process_in(post.mean.float())
            std = post.std.float() * vae.scaling_factor
        return mean.to(self.device).clone(), std.to(self.device).clone()

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.vae_model
        p = next(vae.parameters())
        with torch.no_grad():
            x = vae.decode(vae.process_out(latents.float()).to(p.device, p.dtype))
        return x.float().clamp(-1, 1).to(self.device)

    def encode_prompts(self, prompts: List[str]) -> torch.Tensor:
        """The engine's conditioning, as ClassicTextProcessingEngine.__call__ computes it (chunks of
        75 tokens, embeddings spliced, emphasis applied), without its per-call log line and the
        infotext note it leaves for the next txt2img. The run's embeddings are registered again
        first if a reload of the database dropped them (the training would silently learn nothing)."""
        from backend.text_processing import emphasis
        from modules.shared import opts
        eng = self.text_engine
        self.keep_registered()
        eng.emphasis = emphasis.get_current_option(opts.emphasis)()
        batch_chunks, _ = eng.process_texts(list(prompts))
        zs = []
        for i in range(max(len(c) for c in batch_chunks)):
            chunk = [c[i] if i < len(c) else eng.empty_chunk() for c in batch_chunks]
            eng.embeddings.fixes = [c.fixes for c in chunk]
            zs.append(eng.process_tokens([c.tokens for c in chunk], [c.multipliers for c in chunk]))
        return torch.hstack(zs).to(self.device)

    def predict(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet()(noisy, t, context=cond, transformer_options={})

    def add_token(self, token: str, n_vectors: int, init_word: str) -> DbToken:
        """An Embedding in the engine's database, initialised as the WebUI's create_embedding does:
        vector i is the init text's token embedding number i * len // n."""
        from backend.text_processing.textual_inversion import Embedding
        self.refuse_taken(token)
        ids = self.text_engine.tokenize([init_word or "*"])[0] or self.text_engine.tokenize(["*"])[0]
        table = self.text_encoder().text_model.embeddings.token_embedding.wrapped.weight
        with torch.no_grad():
            init = table[torch.tensor(ids, device=table.device)].float()
            vec = torch.stack([init[i * len(ids) // n_vectors] for i in range(n_vectors)]).to(self.device)
        return self.register_new(DbToken, Embedding, nn.Parameter(vec), token, n_vectors, int(vec.shape[1]))

    # the text engine's embedding database (embedding_tokens.py): its calls take no model
    @property
    def token_db(self):
        return self.text_engine.embeddings

    def register(self, emb) -> None:
        self.token_db.register_embedding(emb)

    def unregister(self, name: str) -> None:
        self.token_db.register_embedding_by_name(None, name)

    def lora_targets(self, text_encoder: bool, conv: bool) -> Dict[str, nn.Module]:
        """Forge's UNet keeps the ldm layout, so the kohya names are the ldm adapter's; its linear
        layers are ForgeOperations.Linear (not nn.Linear), which ldm_lora_targets accepts."""
        return ldm_lora_targets(self.unet(), self.text_encoder() if text_encoder else None, conv)

    def checkpoint_state(self) -> Dict[str, torch.Tensor]:
        """A single-file SD1 checkpoint as StableDiffusion.save_checkpoint composes it (UNet under
        model.diffusion_model., CLIP through SD15.process_clip_state_dict_for_saving, the VAE under
        first_stage_model.), without the duplicate key of the embedding wrapper."""
        from huggingface_guess import model_list
        out = {f"model.diffusion_model.{k}": v for k, v in self.unet().state_dict().items()}
        clip = {k: v for k, v in self.engine.forge_objects.clip.cond_stage_model.state_dict().items()
                if ".token_embedding.wrapped." not in k}
        out.update(model_list.SD15.process_clip_state_dict_for_saving(self.engine, clip))
        out.update({f"first_stage_model.{k}": v for k, v in self.vae_model.state_dict().items()})
        return out

    def set_gradient_checkpointing(self, on: bool) -> None:
        """Forge's own switch raises NotImplementedError (backend/nn/unet.py, checkpoint()): each
        ResBlock and transformer block is recomputed per instance instead, as for ldm (the same
        class names and `_forward` signatures)."""
        self._checkpointed = checkpoint_blocks(self.unet(), self._checkpointed, on)

    def capture_context(self):
        """While a CUDA graph is recorded: Forge's timestep_embedding builds its frequency table on
        the CPU and copies it over, which a capture cannot contain (see LdmAdapter.capture_context)."""
        import backend.nn.unet as forge_unet
        return timestep_table_on_device(forge_unet)

    def describe(self) -> str:
        n = sum(p.numel() for p in self.unet().parameters()) / 1e6
        return f"{self.source} (UNet {n:.1f}M params, {str(self.dtype).replace('torch.', '')}, {self.prediction_type})"
