"""The ldm adapter: a Stability-AI `LatentDiffusion`, as the WebUI holds in `shared.sd_model`.

It talks to the model only through the calls the WebUI itself uses (encode_first_stage,
decode_first_stage, cond_stage_model(list_of_str), apply_model), so the same code drives the
WebUI's loaded model and the tiny one. Names given to the outside world (LoRA keys) are kohya's,
in the form that loads into the right module in the WebUI on any UNet layout (kohya_names.py).

Tested on SD1 (transformers' CLIP text stage). SD2's OpenCLIP text stage has no `transformer`:
there text-encoder training and new tokens stop with a clear error (SD2 itself is not tested yet).

Host path: runs on the WebUI's Python 3.10 and torch 2.1; imports nothing from the WebUI or diffusers.
"""
from __future__ import annotations

import contextlib
import math

from typing import Dict, List, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from .kohya_names import unet_lora_names
from .ldm_names import ldm_name_to_unet, unet_prefix_pairs
from .token_splice import SplicedToken, splice_token

PREDICTION = {"eps": "epsilon", "v": "v_prediction"}
# ldm block classes whose `_forward` we recompute under gradient checkpointing
CHECKPOINTED = ("ResBlock", "BasicTransformerBlock")


class LdmAdapter:
    family = "ldm"

    def __init__(self, model, device="cpu", dtype=torch.float32, source: str = "", place: bool = True):
        """`place=False` takes the model exactly as it is (the WebUI's loaded model: its parts'
        devices, dtypes and attention are the host's business, and host/ puts back what a run
        changes); `device` is then where training tensors live and `dtype` is read from the UNet."""
        if model.parameterization not in PREDICTION:
            raise ValueError(f"model: ldm parameterization {model.parameterization!r} is not supported (eps or v)")
        self.model = model
        self.device = torch.device(device)
        self.source = source
        if place:
            self.dtype = dtype
            # Weights to device and dtype; the schedule buffers only to the device (fp16 would round
            # alphas_cumprod near 1, where the noise level at small t lives).
            for part in (model.model, model.first_stage_model, model.cond_stage_model):
                part.to(self.device, dtype).requires_grad_(False).eval()
            model.to(self.device)
            if hasattr(self._clip(), "device"):
                self._clip().device = self.device  # FrozenCLIPEmbedder moves token ids to this device
        else:
            self.dtype = next(model.model.diffusion_model.parameters()).dtype
        self.prediction_type = PREDICTION[model.parameterization]
        self.alphas_cumprod = model.alphas_cumprod.detach().to(self.device, torch.float32).clone()
        self.scale_factor = float(model.scale_factor)
        self.latent_scale = 2 ** (model.first_stage_model.encoder.num_resolutions - 1)
        self.base_resolution = int(model.image_size) * self.latent_scale
        self._checkpointed: List[nn.Module] = []
        self.sdpa_modules = _use_sdpa_attention(self.unet()) if place else 0
        clip = self._clip()
        # token ids -> conditioning on the device (capturable) only for ldm's own FrozenCLIPEmbedder:
        # the WebUI's hijacked CLIP splices embeddings and prompt weights in Python
        self.encodes_ids = clip is self.model.cond_stage_model and type(clip).__name__ == "FrozenCLIPEmbedder" \
            and getattr(clip, "layer", "last") == "last"

    # --- the parts ------------------------------------------------------------------------------
    def _clip(self) -> nn.Module:
        """The FrozenCLIPEmbedder (the WebUI wraps it as `.wrapped` in its hijacked CLIP)."""
        cs = self.model.cond_stage_model
        return getattr(cs, "wrapped", cs)

    def unet(self) -> nn.Module:
        return self.model.model.diffusion_model

    def text_encoder(self) -> nn.Module:
        clip = self._clip()
        if not hasattr(clip, "transformer"):
            raise ValueError(f"model: its text stage ({type(clip).__name__}) is not transformers' CLIP (SD1);"
                             " training the text encoder or new tokens needs an SD1 model")
        return clip.transformer  # transformers' CLIPTextModel

    def vae(self) -> nn.Module:
        return self.model.first_stage_model

    @property
    def tokenizer(self):
        self.text_encoder()  # the same check: an SD1 CLIP text stage
        return self._clip().tokenizer

    # --- the protocol ---------------------------------------------------------------------------
    def encode_images(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """[-1, 1] images -> (mean, std) of the scaled latent distribution."""
        dist = self.model.encode_first_stage(pixels.to(self.device, self._vae_dtype()))  # no_grad inside ldm
        return dist.mean.float() * self.scale_factor, dist.std.float() * self.scale_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        return self.model.decode_first_stage(latents.to(self.device, self._vae_dtype())).float().clamp(-1, 1)

    def _vae_dtype(self) -> torch.dtype:
        """The VAE's own dtype (the WebUI may keep it in fp32 beside an fp16 UNet: --no-half-vae)."""
        return next(self.model.first_stage_model.parameters()).dtype

    def encode_prompts(self, prompts: List[str]) -> torch.Tensor:
        return self.model.cond_stage_model(list(prompts))

    def tokenize(self, prompts: List[str]) -> torch.Tensor:
        """As FrozenCLIPEmbedder.forward tokenizes (padded to 77); with encode_ids it gives the same."""
        return self.tokenizer(list(prompts), truncation=True, max_length=77, padding="max_length",
                              return_tensors="pt").input_ids.to(self.device)

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_encoder()(input_ids=ids).last_hidden_state

    def predict(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.model.apply_model(noisy, t, cond)

    def add_token(self, token: str, n_vectors: int, init_word: str) -> SplicedToken:
        """New vectors spliced into the cond stage's own CLIP (a raw ldm model, outside the WebUI)."""
        return splice_token(self.tokenizer, self.text_encoder(), token, n_vectors, init_word)

    def lora_targets(self, text_encoder: bool, conv: bool) -> Dict[str, nn.Module]:
        return ldm_lora_targets(self.unet(), self.text_encoder() if text_encoder else None, conv)

    def checkpoint_state(self) -> Dict[str, torch.Tensor]:
        """The model's own ldm-named state dict: what the WebUI loads as a single-file checkpoint.
        A spliced Textual Inversion embedding is written as the plain embedding it wraps."""
        out = {}
        for k, v in self.model.state_dict().items():
            if ".token_embedding.extras." in k:
                continue
            out[k.replace(".token_embedding.base.", ".token_embedding.")] = v
        return out

    def set_gradient_checkpointing(self, on: bool) -> None:
        """Recompute each ResBlock and transformer block in the backward pass (torch's non-reentrant
        checkpoint, per instance, so nothing global in ldm is patched).

        ldm's own switch (the `use_checkpoint`/`checkpoint` flags) cannot train a frozen model: its
        CheckpointFunction asks autograd for the gradient of every parameter of the block, which
        fails when they do not require grad (LoRA, Textual Inversion), and would leave LoRA weights
        attached by hooks out. The override calls `_forward` directly, so it never goes through
        those flags, and removing it puts the block back exactly as it was.
        """
        self._checkpointed = checkpoint_blocks(self.unet(), self._checkpointed, on)

    def capture_context(self):
        """While a CUDA graph is recorded: ldm's timestep_embedding builds its frequency table on
        the CPU and copies it over, which a capture cannot contain. An equal function that builds
        it on the timesteps' device stands in for the recording only; the recorded kernels then
        hold no reference to either function, and the original is back at once."""
        import ldm.modules.diffusionmodules.openaimodel as oam
        return timestep_table_on_device(oam)

    def describe(self) -> str:
        n = sum(p.numel() for p in self.unet().parameters()) / 1e6
        return f"ldm model ({self.source}; UNet {n:.1f}M params, {self.prediction_type})"


def is_linear(m: nn.Module) -> bool:
    """nn.Linear, or a layer that computes as one without subclassing it (a module with in/out
    features and a 2-D weight, as some hosts build their UNet and CLIP)."""
    if isinstance(m, nn.Linear):
        return True
    w = getattr(m, "weight", None)
    return hasattr(m, "in_features") and hasattr(m, "out_features") and isinstance(w, torch.Tensor) and w.ndim == 2


def ldm_lora_targets(unet: nn.Module, text_model, conv: bool) -> Dict[str, nn.Module]:
    """The modules DiffusersAdapter.lora_targets picks, for a UNet in the ldm layout, under kohya
    names that load into the right module in the WebUI (kohya_names.py: the usual diffusers-block
    names on SD's layouts, ldm-path names on any other): linears and 1x1 convs in its transformer
    blocks (and 3x3 convs of resnets and samplers with `conv`); with `text_model` (a transformers
    CLIPTextModel), its attention and MLP linears."""
    found: Dict[str, nn.Module] = {}  # by ldm path inside the UNet
    for name, mod in unet.named_modules():
        kind = type(mod).__name__
        if kind == "SpatialTransformer":
            for sub, m in mod.named_modules():
                if is_linear(m) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)):
                    found[f"{name}.{sub}"] = m
        elif conv and kind in ("ResBlock", "Downsample", "Upsample"):
            for sub, m in mod.named_modules():
                if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                    found[f"{name}.{sub}"] = m
    try:
        pairs = ldm_unet_pairs(unet)
        named = [(ldm_name_to_unet(path, pairs), path) for path in found]
    except (ValueError, KeyError):  # no diffusers layout (e.g. different res blocks per level): ldm paths
        named = [(None, path) for path in found]
    out = {key: found[path] for key, (_, path) in zip(unet_lora_names(named), named)}
    if text_model is not None:
        for name, mod in text_model.named_modules():
            if type(mod).__name__ in ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP"):
                for sub, m in mod.named_children():
                    if is_linear(m):
                        out["lora_te_" + f"{name}.{sub}".replace(".", "_")] = m
    return out


def ldm_unet_pairs(unet: nn.Module) -> List[Tuple[str, str]]:
    """ldm_names' (diffusers, ldm) prefix pairs for this UNet, keeping only pairs whose ldm side
    is there with the right kind of module (see ldm_name_to_unet)."""
    levels, L = len(unet.channel_mult), unet.num_res_blocks[0]
    if any(n != L for n in unet.num_res_blocks):
        raise ValueError("model: a UNet with different res blocks per level has no kohya names")
    mods = dict(unet.named_modules())

    def has_attn(k: int) -> bool:
        return any(type(m).__name__ == "SpatialTransformer" for m in unet.output_blocks[k])
    # diffusers up block i is ldm level (levels-1-i), its first output block is i*(L+1)
    up_attn = [has_attn(i * (L + 1)) for i in range(levels)]
    keep = []
    for d, l in unet_prefix_pairs(L, levels, up_attn):
        if l in mods and (".attentions." in d) == (type(mods[l]).__name__ == "SpatialTransformer"):
            keep.append((d, l))
    return keep


def checkpoint_blocks(unet: nn.Module, done: List[nn.Module], on: bool) -> List[nn.Module]:
    """Take the checkpointing off the blocks in `done`; with `on`, give every ResBlock and
    transformer block of `unet` (ldm's or sgm's: the same classes) a forward that recomputes its
    `_forward` in the backward pass. Returns the blocks that have one."""
    for m in done:
        del m.forward
    out: List[nn.Module] = []
    if on:
        for m in unet.modules():
            if type(m).__name__ in CHECKPOINTED:
                m.forward = _recomputed(m._forward)
                out.append(m)
    return out


@contextlib.contextmanager
def timestep_table_on_device(module):
    """`module.timestep_embedding` (ldm's or sgm's openaimodel) replaced, for the block, by the same
    function building its table on the timesteps' device."""
    original = module.timestep_embedding
    module.timestep_embedding = _timestep_embedding_on_device
    try:
        yield
    finally:
        module.timestep_embedding = original


def _recomputed(fn):
    def forward(*args, **kwargs):  # SpatialTransformer calls its blocks with context=...
        return checkpoint(fn, *args, use_reentrant=False, **kwargs)
    return forward


def _use_sdpa_attention(unet: nn.Module) -> int:
    """ldm's attention as shipped materialises the whole attention matrix in fp32 (the WebUI's own
    Train tab runs it that way unless told otherwise). Where a block still has that stock forward,
    give the instance torch's scaled_dot_product_attention instead: the same function, a fraction
    of the time and memory. A forward the WebUI already replaced (its sdp/xformers optimisations)
    is left alone. Returns how many blocks were switched."""
    n = 0
    for m in unet.modules():
        if type(m).__name__ == "CrossAttention" and type(m).forward.__module__ == "ldm.modules.attention":
            m.forward = _sdpa_forward.__get__(m)
            n += 1
    return n


def _sdpa_forward(self, x, context=None, mask=None):
    h = self.heads
    context = x if context is None else context
    q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
    b, n, _ = q.shape
    q, k, v = (t.reshape(b, -1, h, t.shape[-1] // h).transpose(1, 2) for t in (q, k, v))
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


def _timestep_embedding_on_device(timesteps, dim, max_period=10000, repeat_only=False):
    """ldm.modules.diffusionmodules.util.timestep_embedding, with the table made on the device."""
    if repeat_only:
        return timesteps[:, None].expand(-1, dim)
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(0, half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb
