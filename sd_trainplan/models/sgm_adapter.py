"""The sgm adapter: Stability-AI's `DiffusionEngine` (SDXL), as AUTOMATIC1111 holds it in `shared.sd_model`.

SDXL conditions its UNet on two things (sgm's GeneralConditioner, sd_xl_base.yaml):
- `crossattn`: the two text encoders' token states side by side (CLIP-L's penultimate layer, 768,
  and OpenCLIP bigG's, 1280: 2048 wide);
- `vector`: OpenCLIP's pooled output followed by sinusoidal embeddings of the original size, the
  crop's top-left corner and the target size (2816 in all), fed to the UNet's label embedding.
The training loop treats conditioning as one tensor per prompt, so `encode_prompts` packs the
text's part of both into one: the pooled vector in the first `vector_rows` rows, then the token
states (`pack`/`unpack`). The size and crop embeddings are added in `predict`, from the size of the
latents being denoised: original = target = that size, crop (0, 0), which is what the WebUI's
txt2img passes for a picture of that size (modules/sd_models_xl.py), and each aspect-ratio bucket
gets its own. An empty prompt encodes to zeros, as sgm drops captions in training and as the
WebUI encodes an empty negative prompt.

The text encoders are called through the conditioner's own embedder modules (each returns its
token states, the second also its pooled vector), not through `conditioner.forward`, which runs
them under no_grad: Textual Inversion needs their gradient. Inside the WebUI those embedders are
its hijacked wrappers (embeddings by name, prompt weights, long prompts), as in txt2img.

Prediction type and noise schedule come from the model: eps or v from the denoiser's scaling
(as the WebUI's extend_sdxl reads it), alphas_cumprod from the WebUI's copy when it made one,
else from the denoiser's sigmas. Host path: Python 3.10, torch 2.1; imports neither the WebUI nor sgm.
"""
from __future__ import annotations

import math
from typing import Dict, List, Tuple

import torch
from torch import nn

from .ldm_adapter import checkpoint_blocks, timestep_table_on_device
from .split_attention import split

PREDICTION = {"EpsScaling": "epsilon", "VScaling": "v_prediction"}
TEXT_KEY = "txt"
SIZE_KEYS = ("original_size_as_tuple", "crop_coords_top_left", "target_size_as_tuple")
SDXL_BASE_RESOLUTION = 1024
TI_KEYS = ("clip_l", "clip_g")  # what the WebUI calls each encoder's vectors in an SDXL embedding


def text_encoders_of(model) -> List[nn.Module]:
    """CLIP-L's transformers model and OpenCLIP's model (inside the WebUI's wrappers if any)."""
    out = []
    for e in model.conditioner.embedders:
        if getattr(e, "input_key", None) == TEXT_KEY:
            inner = getattr(e, "wrapped", e)
            out.append(inner.transformer if hasattr(inner, "transformer") else inner.model)
    return out


def pack(crossattn: torch.Tensor, vector: torch.Tensor, rows: int) -> torch.Tensor:
    """[B, L, D] token states and [B, V] vector (V <= rows * D) as one [B, rows + L, D] tensor."""
    b, _, d = crossattn.shape
    pad = vector.new_zeros(b, rows * d - vector.shape[1])
    return torch.cat([torch.cat([vector, pad], 1).view(b, rows, d).to(crossattn.dtype), crossattn], 1)


def unpack(cond: torch.Tensor, rows: int, width: int) -> Tuple[torch.Tensor, torch.Tensor]:
    return cond[:, rows:], cond[:, :rows].reshape(cond.shape[0], -1)[:, :width]


class SgmAdapter:
    family = "sgm"
    encodes_ids = False

    def __init__(self, model, device="cpu", dtype=torch.float32, source: str = "", place: bool = True):
        """`place=False` takes the model as it is (the WebUI's loaded model, see LdmAdapter)."""
        self.check(model)
        self.model, self.device, self.source = model, torch.device(device), source
        cond = model.conditioner
        self.text_embedders = [e for e in cond.embedders if getattr(e, "input_key", None) == TEXT_KEY]
        self.size_embedders = [e for e in cond.embedders if getattr(e, "input_key", None) != TEXT_KEY]
        scaling = type(model.denoiser.scaling).__name__
        if place:
            self.dtype = dtype
            for part in (model.model, model.first_stage_model, cond):
                part.to(self.device, dtype).requires_grad_(False).eval()
            for e in self.text_embedders:
                e.device = self.device  # sgm's embedders move their token ids there
        else:
            self.dtype = next(self.unet().parameters()).dtype
        self.prediction_type = PREDICTION[scaling]
        ac = getattr(model, "alphas_cumprod", None)  # the WebUI's (modules/sd_models_xl.py: extend_sdxl)
        if ac is None:
            sigmas = model.denoiser.sigmas.detach().double()
            ac = 1 / (1 + sigmas ** 2)
        self.alphas_cumprod = torch.as_tensor(ac).detach().to(self.device, torch.float32).clone()
        self.scale_factor = float(model.scale_factor)
        self.latent_scale = 2 ** (model.first_stage_model.encoder.num_resolutions - 1)
        self.base_resolution = SDXL_BASE_RESOLUTION
        unet = self.unet()
        self.context_dim = next(m for m in unet.modules() if type(m).__name__ == "SpatialTransformer") \
            .transformer_blocks[0].attn2.to_k.in_features
        self.size_dim = sum(2 * e.outdim for e in self.size_embedders)  # two numbers per size
        self.pooled_dim = unet.label_emb[0][0].in_features - self.size_dim
        self.vector_rows = math.ceil(self.pooled_dim / self.context_dim)
        self._checkpointed: List[nn.Module] = []
        self._sizes: Dict[tuple, torch.Tensor] = {}  # size_embedding's, per latent shape

    @staticmethod
    def check(model) -> None:
        """ValueError naming the model's problem when it is not an SDXL base model this trains."""
        scaling = type(model.denoiser.scaling).__name__
        if scaling not in PREDICTION:
            raise ValueError(f"model: an SDXL denoiser with {scaling} is not supported (eps or v prediction)")
        keys = [getattr(e, "input_key", None) for e in model.conditioner.embedders]
        if keys[:2] != [TEXT_KEY, TEXT_KEY] or keys[2:] != list(SIZE_KEYS):
            raise ValueError(f"model: a DiffusionEngine conditioned on {keys} is not an SDXL base model (the SDXL"
                             " refiner and other sgm models are not supported)")

    # --- the parts ------------------------------------------------------------------------------
    def unet(self) -> nn.Module:
        return self.model.model.diffusion_model

    def text_encoders(self) -> List[nn.Module]:
        return text_encoders_of(self.model)

    def text_encoder(self) -> nn.Module:
        """Both text encoders as one module (not registered in the model): what Dreambooth trains."""
        return nn.ModuleList(self.text_encoders())

    def vae(self) -> nn.Module:
        return self.model.first_stage_model

    def parkable_parts(self) -> List[nn.Module]:
        """What the update never calls once prompts and latents are cached (train/offload.py)."""
        return list(self.text_embedders) + [self.vae()]

    # --- the protocol ---------------------------------------------------------------------------
    def encode_images(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """[-1, 1] images -> (mean, std) of the scaled latent distribution (sgm's AutoencoderKL.encode
        without the sample its inference wrapper draws)."""
        vae = self.vae()
        with torch.no_grad():
            moments = vae.quant_conv(vae.encoder(pixels.to(self.device, self._vae_dtype())))
        mean, logvar = moments.float().chunk(2, dim=1)
        std = torch.exp(0.5 * torch.clamp(logvar, -30.0, 20.0))
        return mean * self.scale_factor, std * self.scale_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.model.decode_first_stage(latents.to(self.device, self._vae_dtype())).float().clamp(-1, 1)

    def _vae_dtype(self) -> torch.dtype:
        return next(self.vae().parameters()).dtype

    def encode_prompts(self, prompts: List[str]) -> torch.Tensor:
        """Both encoders' token states and the pooled vector, packed into one tensor (see pack)."""
        prompts = list(prompts)
        cross, vector = [], []
        for e in self.text_embedders:
            out = e(prompts)
            for o in out if isinstance(out, (list, tuple)) else [out]:
                (cross if o.dim() == 3 else vector).append(o)
        c, v = torch.cat(cross, 2), torch.cat(vector, 1)
        keep = torch.tensor([p != "" for p in prompts], device=c.device)
        if not keep.all():
            c, v = c * keep.view(-1, 1, 1).to(c.dtype), v * keep.view(-1, 1).to(v.dtype)
        return pack(c, v, self.vector_rows)

    def predict(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        crossattn, pooled = unpack(cond, self.vector_rows, self.pooled_dim)
        y = torch.cat([pooled, self.size_embedding(noisy).to(pooled.dtype)], 1)
        # what sgm's OpenAIWrapper (and the WebUI's apply_model) does, less its empty `concat` tensor
        return self.unet()(noisy, timesteps=t, context=crossattn, y=y)

    def size_embedding(self, noisy: torch.Tensor) -> torch.Tensor:
        """The size and crop part of the vector input for latents of this shape: original = target =
        their size in pixels, crop (0, 0). Parameter-free, so kept per shape (a CUDA graph records the
        lookup, not the host-to-device copy of the sizes)."""
        b, h, w = noisy.shape[0], noisy.shape[-2] * self.latent_scale, noisy.shape[-1] * self.latent_scale
        key = (b, h, w, noisy.device)
        if key not in self._sizes:
            sizes = {"original_size_as_tuple": (h, w), "crop_coords_top_left": (0, 0), "target_size_as_tuple": (h, w)}
            parts = [e(torch.tensor(sizes[e.input_key], device=noisy.device, dtype=torch.float32).repeat(b, 1))
                     for e in self.size_embedders]
            self._sizes[key] = torch.cat(parts, 1).detach()
        return self._sizes[key]

    def add_token(self, token: str, n_vectors: int, init_word: str):
        raise ValueError("method: Textual Inversion on SDXL trains inside AUTOMATIC1111, through its embedding"
                         " database (load the SDXL checkpoint there and use the Train Planner tab)")

    def lora_targets(self, text_encoder: bool, conv: bool) -> Dict[str, nn.Module]:
        """kohya's SDXL names: lora_unet_ + the UNet's own (sgm) module path, lora_te1_ + CLIP-L's
        transformers path, lora_te2_ + OpenCLIP's layers under the names transformers gives them
        (self_attn_{q,k,v,out}_proj, mlp_fc1, mlp_fc2), as the WebUI's Lora extension maps them back.
        UNet: the Linear and 1x1 convs of the transformer blocks (and 3x3 convs of ResBlocks and
        samplers with `conv`); text encoders: attention and MLP."""
        out: Dict[str, nn.Module] = {}
        for name, mod in self.unet().named_modules():
            kind = type(mod).__name__
            if kind == "SpatialTransformer":
                for sub, m in mod.named_modules():
                    if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)):
                        out["lora_unet_" + f"{name}.{sub}".replace(".", "_")] = m
            elif conv and kind in ("ResBlock", "Downsample", "Upsample"):
                for sub, m in mod.named_modules():
                    if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                        out["lora_unet_" + f"{name}.{sub}".replace(".", "_")] = m
        if text_encoder:
            clip_l, clip_g = self.text_encoders()
            for name, mod in clip_l.named_modules():
                if type(mod).__name__ in ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP"):
                    for sub, m in mod.named_children():
                        if isinstance(m, nn.Linear):
                            out["lora_te1_" + f"{name}.{sub}".replace(".", "_")] = m
            for i, block in enumerate(clip_g.transformer.resblocks):
                pre = f"lora_te2_text_model_encoder_layers_{i}_"
                for which, proj in split(block.attn).items():
                    out[f"{pre}self_attn_{which}_proj"] = proj
                out[pre + "mlp_fc1"], out[pre + "mlp_fc2"] = block.mlp.c_fc, block.mlp.c_proj
        return out

    def checkpoint_state(self) -> Dict[str, torch.Tensor]:
        """The DiffusionEngine's own state dict: what the WebUI loads as a single-file checkpoint."""
        return dict(self.model.state_dict())

    def set_gradient_checkpointing(self, on: bool) -> None:
        """As LdmAdapter's: torch's non-reentrant checkpoint around each ResBlock and transformer
        block's `_forward` (sgm's own CheckpointFunction cannot train a frozen model either)."""
        self._checkpointed = checkpoint_blocks(self.unet(), self._checkpointed, on)

    def capture_context(self):
        """While a CUDA graph is recorded: sgm's timestep_embedding (the UNet's and the size
        embeddings') builds its table on the CPU; see LdmAdapter.capture_context."""
        import sgm.modules.diffusionmodules.openaimodel as oam
        return timestep_table_on_device(oam)

    def describe(self) -> str:
        n = sum(p.numel() for p in self.unet().parameters()) / 1e6
        return f"SDXL model ({self.source}; UNet {n:.1f}M params, {self.prediction_type})"
