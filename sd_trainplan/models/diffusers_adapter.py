"""The standalone adapter: diffusers UNet/VAE + transformers CLIP text encoder.

Loads the built-in tiny model, a local diffusers folder, or a single-file checkpoint, always
offline (local_files_only). The only module of ours that imports diffusers.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from .adapter import sd_alphas_cumprod
from .stored_dtypes import folder_dtypes, single_file_dtypes
from .token_splice import SplicedToken, splice_token


class ModelLoadError(ValueError):
    pass


def part_dtypes(dtype: torch.dtype, masters: Iterable[str],
                parts: Iterable[str] = ("unet", "vae", "text_encoder")) -> Dict[str, torch.dtype]:
    """Each part's dtype: fp32 for the parts named in `masters` (what the method trains keeps fp32
    masters; SDXL's text_encoder_2 goes with text_encoder), `dtype` for the frozen rest."""
    masters = tuple(masters)
    return {p: torch.float32 if p.split("_2")[0] in masters else dtype for p in parts}


def folder_tokenizer(folder, sub: str = "tokenizer"):
    """Ours (clip_tokenizer.py: the same ids without importing transformers, 0.68 s of a run's start on
    the GPU machine) for a CLIPTokenizer folder; transformers' CLIPTokenizer for anything else."""
    from .clip_tokenizer import load_folder
    ours = load_folder(Path(folder) / sub)
    if ours is not None:
        return ours
    from transformers import CLIPTokenizer
    return CLIPTokenizer.from_pretrained(str(folder), subfolder=sub, local_files_only=True)


def folder_scheduler(folder) -> dict:
    import json
    return json.loads((Path(folder) / "scheduler" / "scheduler_config.json").read_text())


class DiffusersAdapter:
    family = "diffusers"
    encodes_ids = True  # token ids -> conditioning entirely on the device (see encode_ids)

    def __init__(self, unet, vae, text_encoder, tokenizer, scheduler_config: dict, device="cpu",
                 dtype=torch.float32, source: str = "", base_resolution: Optional[int] = None,
                 masters: Iterable[str] = ()):
        """`dtype`: the frozen parts'; the parts named in `masters` ('unet', 'text_encoder': what
        Dreambooth trains) are kept in fp32."""
        self.device = torch.device(device)
        self.dtype = dtype
        part = part_dtypes(dtype, masters)
        self._unet = unet.to(self.device, part["unet"]).requires_grad_(False).eval()
        self._vae = vae.to(self.device, part["vae"]).requires_grad_(False).eval()
        self._text = text_encoder.to(self.device, part["text_encoder"]).requires_grad_(False).eval()
        self.tokenizer = tokenizer
        self.scheduler_config = dict(scheduler_config)
        self.prediction_type = scheduler_config.get("prediction_type", "epsilon")
        steps = scheduler_config.get("num_train_timesteps", 1000)
        self.alphas_cumprod = sd_alphas_cumprod(steps, scheduler_config.get("beta_start", 0.00085),
                                                scheduler_config.get("beta_end", 0.012), self.device)
        self.vae_scaling = float(vae.config.scaling_factor)
        self.latent_scale = 2 ** (len(vae.config.block_out_channels) - 1)
        self.base_resolution = base_resolution or int(unet.config.sample_size) * self.latent_scale
        self.source = source
        self.layers_per_block = unet.config.layers_per_block
        self._compiled = None  # use_compile()
        self.stored_dtypes: Optional[Dict[str, torch.dtype]] = None  # in its files, when loaded from files
        self.library_reason: Optional[str] = None  # why a folder of SD's loaded into the libraries' classes

    # --- the protocol -----------------------------------------------------------------------
    def unet(self) -> nn.Module:
        return self._unet

    def text_encoder(self) -> nn.Module:
        return self._text

    def vae(self) -> nn.Module:
        return self._vae

    def parkable_parts(self) -> List[nn.Module]:
        """What the update never calls once prompts and latents are cached (train/offload.py)."""
        return [self.text_encoder(), self._vae]

    def encode_images(self, pixels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """[-1, 1] images -> (mean, std) of the scaled latent distribution."""
        with torch.no_grad():
            dist = self._vae.encode(pixels.to(self.device, self.dtype)).latent_dist
        return dist.mean.float() * self.vae_scaling, dist.std.float() * self.vae_scaling

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._vae.decode(latents.to(self.dtype) / self.vae_scaling).sample.float().clamp(-1, 1)

    def tokenize(self, prompts: List[str]) -> torch.Tensor:
        return self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                              truncation=True, return_tensors="pt").input_ids.to(self.device)

    def encode_prompts(self, prompts: List[str]) -> torch.Tensor:
        return self.encode_ids(self.tokenize(prompts))

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Token ids -> conditioning: all on the device, so it can be captured in a CUDA graph."""
        return self._text(ids)[0]

    def predict(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        # the compiled UNet serves the update only: validation and sampling run other batch shapes
        # without gradients, and each would cost a compile of its own
        unet = self._compiled if self._compiled is not None and torch.is_grad_enabled() else self._unet
        return unet(noisy, t, encoder_hidden_states=cond).sample

    def add_token(self, token: str, n_vectors: int, init_word: str) -> SplicedToken:
        return splice_token(self.tokenizer, self._text, token, n_vectors, init_word)

    def lora_targets(self, text_encoder: bool, conv: bool) -> Dict[str, nn.Module]:
        """kohya names (kohya_names.py: the form the WebUI maps home on this UNet's layout): Linear
        and 1x1 convs in the UNet's transformer blocks (and 3x3 convs of resnets and samplers with
        `conv`); the text encoder's attention and MLP linears."""
        from .kohya_names import unet_lora_names
        found = self.unet_lora_modules(conv)
        named = list(zip(found, self.ldm_names(found)))
        out: Dict[str, nn.Module] = {key: found[d] for key, (d, _) in zip(unet_lora_names(named), named)}
        if text_encoder:
            out.update(text_lora_targets(self._text, "lora_te_"))
        return out

    def unet_lora_modules(self, conv: bool) -> Dict[str, nn.Module]:
        """The UNet's modules LoRA attaches to, by diffusers name."""
        found: Dict[str, nn.Module] = {}
        for name, mod in self._unet.named_modules():
            if type(mod).__name__ == "Transformer2DModel":
                for sub, m in mod.named_modules():
                    if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)):
                        found[f"{name}.{sub}"] = m
            elif conv and type(mod).__name__ in ("ResnetBlock2D", "Downsample2D", "Upsample2D"):
                for sub, m in mod.named_modules():
                    if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                        found[f"{name}.{sub}"] = m
        return found

    def ldm_names(self, names: Iterable[str]) -> List[str]:
        """diffusers UNet module names -> their ldm (and sgm) module paths."""
        from .ldm_names import unet_name_to_ldm, unet_pairs_for_state
        pairs = unet_pairs_for_state(self._unet.state_dict(), self.layers_per_block)
        return [unet_name_to_ldm(d, pairs) for d in names]

    def checkpoint_state(self) -> Dict[str, torch.Tensor]:
        """The whole model under the original (ldm) single-file key names. SD2's text encoder (OpenCLIP-H,
        gelu) goes under `cond_stage_model.model.` in open_clip's layout, as SD2's files and the WebUI's
        FrozenOpenCLIPEmbedder have it; SD1's CLIP-L under `cond_stage_model.transformer.`."""
        from .ldm_names import diffusers_to_ldm_state
        from .open_clip_names import open_clip_state
        text = self._text.state_dict()
        open_clip = getattr(self._text.config, "hidden_act", "quick_gelu") == "gelu"
        out = diffusers_to_ldm_state(self._unet.state_dict(), self._vae.state_dict(), {} if open_clip else text,
                                     self.layers_per_block, len(self._vae.config.block_out_channels))
        if open_clip:
            out.update({"cond_stage_model.model." + k: v for k, v in open_clip_state(text).items()})
        return out

    def use_channels_last(self) -> None:
        """NHWC weights for the UNet's convolutions (faster on tensor cores; values unchanged).
        Standalone models only: the WebUI's loaded model keeps its layout."""
        self._unet.to(memory_format=torch.channels_last)

    def use_compile(self) -> None:
        """The UNet through torch.compile (Inductor fuses the norms, activations and residual adds that
        dominate the step; each batch shape compiles once, on its first update, and static shapes keep
        it to one compile per bucket). The module itself is untouched: its names, state dict and
        exports are the same. Standalone models only, like channels-last."""
        self._compiled = torch.compile(self._unet, dynamic=False)

    def use_norms_in(self, dtype: torch.dtype) -> int:
        """The UNet's GroupNorm/LayerNorm compute in `dtype` (bf16 under bf16 autocast: norms.py says
        why). Standalone models only, like channels-last."""
        from .norms import norms_in
        return norms_in(self._unet, dtype)

    def save_folder(self, folder) -> Path:
        """Write the model as a diffusers folder (what `--model FOLDER` and from_single_file's config read)."""
        import json
        folder = Path(folder)
        self._unet.save_pretrained(folder / "unet")
        self._vae.save_pretrained(folder / "vae")
        self._text.save_pretrained(folder / "text_encoder")
        self.tokenizer.save_pretrained(folder / "tokenizer")
        (folder / "scheduler").mkdir(parents=True, exist_ok=True)
        sched = {k: v for k, v in self.scheduler_config.items() if not k.startswith("_")}
        (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "DDIMScheduler", **sched}))
        from .tiny_diffusers import MODEL_INDEX
        (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=1))
        return folder

    def set_gradient_checkpointing(self, on: bool) -> None:
        """diffusers recomputes only in training mode, so a frozen UNet (LoRA, TI) is put in it:
        it has no dropout or batch statistics, so the mode changes nothing else."""
        if on:
            self._unet.enable_gradient_checkpointing()
            self._unet.train()
        else:
            self._unet.disable_gradient_checkpointing()

    def describe(self) -> str:
        n = sum(p.numel() for p in self._unet.parameters()) / 1e6
        code = "plain torch" if type(self._unet).__module__.startswith(__package__ + ".plain") else "diffusers"
        why = f"; diffusers' model code because of {self.library_reason}" if self.library_reason else ""
        return f"diffusers model ({self.source}; {code} UNet {n:.1f}M params, {self.prediction_type}{why})"


def text_lora_targets(text_model: nn.Module, prefix: str) -> Dict[str, nn.Module]:
    """A transformers CLIP text model's attention and MLP linears under kohya's names (prefix +
    its module path with '_' for '.': lora_te_text_model_encoder_layers_0_self_attn_q_proj)."""
    out: Dict[str, nn.Module] = {}
    for name, mod in text_model.named_modules():
        if type(mod).__name__ in ("CLIPAttention", "CLIPSdpaAttention", "CLIPMLP"):
            for sub, m in mod.named_children():
                if isinstance(m, nn.Linear):
                    out[prefix + f"{name}.{sub}".replace(".", "_")] = m
    return out


def load_diffusers(model: str, device="cpu", dtype=torch.float32, seed: int = 0,
                   config: Optional[str] = None, prediction_type: str = "epsilon",
                   masters: Iterable[str] = (), plain: bool = True) -> DiffusersAdapter:
    """'tiny', a diffusers folder, or a .safetensors/.ckpt single file (with `config` = a diffusers
    folder holding its configs, since nothing is fetched). Frozen parts in `dtype`, `masters` in fp32.
    `plain=False`: an SD1/SD2/SDXL folder too in diffusers' and transformers' classes (models/plain otherwise)."""
    masters = tuple(masters)
    if model == "tiny":
        from .tiny_diffusers import build_tiny
        unet, vae, text, tok, sched = build_tiny(seed, prediction_type)
        return DiffusersAdapter(unet, vae, text, tok, sched, device, dtype, "built-in tiny model", masters=masters)
    path = Path(model)
    if not path.exists():
        raise ModelLoadError(f"model: {model} does not exist (give 'tiny', a diffusers folder or a .safetensors file)")
    if path.is_dir():
        if not (path / "unet").is_dir():
            raise ModelLoadError(f"model: {model} is not a diffusers folder (no unet/ subfolder)")
        from .sdxl_diffusers import is_sdxl_folder, load_sdxl_folder
        if is_sdxl_folder(path):
            return load_sdxl_folder(path, device, dtype, masters, plain)
        return _load_folder(path, device, dtype, masters, plain)
    return _load_single_file(path, device, dtype, config, masters, plain)


def _load_folder(path: Path, device, dtype, masters=(), plain: bool = True) -> DiffusersAdapter:
    """Each part straight onto the device in its dtype (direct_load.load_folder_parts), as models/plain's
    modules when the folder is SD1.x/SD2.x's (no diffusers or transformers model code imported), else
    as the libraries' (`plain=False` asks for those)."""
    import time

    from .direct_load import load_folder_parts
    from .plain.parts import classes as plain_classes, unsupported_folder
    device = torch.device(device)
    why = unsupported_folder(path) if plain else "asked for (plain=False)"
    use_plain = why is None
    try:
        parts, seconds = load_folder_parts(path, ("unet", "vae", "text_encoder"), device, part_dtypes(dtype, masters),
                                           plain_classes if use_plain else _sd_classes, _sd_classes)
        t = time.monotonic()
        tok, sched = folder_tokenizer(path), folder_scheduler(path)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"model: cannot load the diffusers folder {path}: {e}") from None
    adapter = DiffusersAdapter(parts["unet"], parts["vae"], parts["text_encoder"], tok, sched, device, dtype, str(path),
                               masters=masters)
    adapter.load_seconds = {**seconds, "tokenizer": time.monotonic() - t}
    adapter.library_reason = why
    adapter.stored_dtypes = folder_dtypes(path)
    return adapter


def _sd_classes() -> Dict[str, type]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel
    return {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel}


def _load_single_file(path: Path, device, dtype, config: Optional[str], masters=(), plain: bool = True
                      ) -> DiffusersAdapter:
    """A .safetensors/.ckpt file: configs from `config` (a diffusers folder) or, by default, the ones we
    ship for the architecture detected in the file (SD1.x, SD2.x eps/v, tiny). An SD1.x/SD2.x
    .safetensors goes straight into models/plain's modules (plain/single_file.py); the rest through
    diffusers' from_single_file."""
    from .single_file import config_for, predicts_v
    arch, base = "given", None
    device = torch.device(device)
    try:
        if config is None:
            arch, folder, base = config_for(path)
            config = str(folder)
        parts = None
        if plain:
            from .plain.single_file import load_single_file_parts
            parts = load_single_file_parts(path, Path(config), device, part_dtypes(dtype, masters))
        if parts is not None:
            unet, vae, text = parts["unet"], parts["vae"], parts["text_encoder"]
            tokenizer, sched = folder_tokenizer(config), folder_scheduler(config)
        else:
            from diffusers import StableDiffusionPipeline
            pipe = StableDiffusionPipeline.from_single_file(str(path), config=config, local_files_only=True,
                                                            safety_checker=None, requires_safety_checker=False)
            unet, vae, text, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
            sched = dict(pipe.scheduler.config)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"model: cannot load {path}: {e}") from None
    if arch == "sd2" and predicts_v(unet, unet.config.cross_attention_dim):
        sched["prediction_type"], base = "v_prediction", 768
    adapter = DiffusersAdapter(unet, vae, text, tokenizer, sched, device, dtype,
                               f"{path} ({arch})", base_resolution=base, masters=masters)
    adapter.stored_dtypes = single_file_dtypes(path)
    return adapter
