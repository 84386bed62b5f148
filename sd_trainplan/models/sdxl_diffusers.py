"""The standalone SDXL adapter: a diffusers SDXL folder (StableDiffusionXLPipeline's layout).

What differs from SD1/SD2's DiffusersAdapter, which it extends:
- two text encoders: CLIP-L (`text_encoder`, CLIPTextModel) and OpenCLIP bigG (`text_encoder_2`,
  CLIPTextModelWithProjection), each with its own tokenizer. Conditioning is, as diffusers' SDXL
  pipeline makes it (pipeline_stable_diffusion_xl.py, encode_prompt): the penultimate hidden states
  of both side by side (768 + 1280 = 2048 wide) for the cross-attention, and encoder 2's projected
  pooled output as `text_embeds`. An empty prompt encodes to zeros (the pipeline's
  force_zeros_for_empty_prompt; sgm drops captions to zeros in training): what the WebUI's loaded
  SDXL does too (sgm_adapter.py).
- the UNet's `added_cond_kwargs`: `text_embeds` and `time_ids` = original size, crop top-left, target
  size as (h, w) pairs; like SgmAdapter, original = target = the latents' size in pixels, crop (0, 0),
  one per latent shape (so each aspect-ratio bucket gets its own).
The loop sees one tensor per prompt: the pooled vector packed before the token states (sgm_adapter's
pack/unpack). Prompts go to the device as token ids of both tokenizers, [B, 2, 77], so Textual
Inversion's update can be captured in a CUDA graph as SD's is.

Exports read by the WebUI: an SDXL embedding {clip_l: n x 768, clip_g: n x 1280}; LoRA under kohya's
SDXL names (lora_unet_ + the sgm module path, lora_te1_, lora_te2_ + transformers paths: the names
SgmAdapter gives the WebUI's loaded model); Dreambooth as a single file in sgm's layout (sdxl_names.py).

A folder whose four configs models/plain covers (SDXL base's) loads into those modules, with the
libraries' names, so all of the above reads them as it reads diffusers' and transformers' models.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Iterable, List, Tuple

import torch
from torch import nn

from .diffusers_adapter import (DiffusersAdapter, ModelLoadError, folder_scheduler, folder_tokenizer, part_dtypes,
                                text_lora_targets)
from .sgm_adapter import TI_KEYS, pack, unpack
from .token_splice import splice_token, token_strings

PARTS = ("unet", "vae", "text_encoder", "text_encoder_2")
NEEDED = {  # file a folder must have -> what it is
    "unet/config.json": "the UNet's config", "vae/config.json": "the VAE's config",
    "text_encoder/config.json": "CLIP-L's config", "text_encoder_2/config.json": "OpenCLIP bigG's config",
    "tokenizer/vocab.json": "CLIP-L's tokenizer", "tokenizer_2/vocab.json": "OpenCLIP bigG's tokenizer",
    "scheduler/scheduler_config.json": "the noise schedule"}


class SdxlSplicedTokens:
    """Textual Inversion vectors for both encoders, under the WebUI's names (clip_l, clip_g)."""

    def __init__(self, token: str, ids: List[int], parts: Dict[str, nn.Parameter]):
        self.token, self.ids, self.parts = token, ids, parts

    @property
    def vectors(self) -> torch.Tensor:
        return torch.cat([p.detach() for p in self.parts.values()], dim=1)

    @property
    def prompt_text(self) -> str:
        return " ".join(token_strings(self.token, len(self.ids)))


class DiffusersSdxlAdapter(DiffusersAdapter):
    family = "diffusers-sdxl"

    def __init__(self, unet, vae, text_encoder, text_encoder_2, tokenizer, tokenizer_2, scheduler_config: dict,
                 device="cpu", dtype=torch.float32, source: str = "", masters: Iterable[str] = ()):
        masters = tuple(masters)
        super().__init__(unet, vae, text_encoder, tokenizer, scheduler_config, device, dtype, source, masters=masters)
        part = torch.float32 if "text_encoder" in masters else dtype
        self._text2 = text_encoder_2.to(self.device, part).requires_grad_(False).eval()
        self.tokenizer_2 = tokenizer_2
        self._texts = nn.ModuleList([self._text, self._text2])  # what Dreambooth's text encoder training trains
        self.pooled_dim = int(self._text2.config.projection_dim)
        self.context_dim = int(unet.config.cross_attention_dim)
        self.vector_rows = -(-self.pooled_dim // self.context_dim)
        self._time_ids: Dict[tuple, torch.Tensor] = {}

    def text_encoder(self) -> nn.Module:
        return self._texts

    def text_encoders(self) -> List[nn.Module]:
        return [self._text, self._text2]

    def tokenize(self, prompts: List[str]) -> torch.Tensor:
        """[B, 2, 77]: each tokenizer's ids (they pad differently: SDXL's second pads with '!')."""
        ids = [tok(prompts, padding="max_length", max_length=tok.model_max_length, truncation=True,
                   return_tensors="pt").input_ids for tok in (self.tokenizer, self.tokenizer_2)]
        return torch.stack(ids, 1).to(self.device)

    def encode_ids(self, ids: torch.Tensor) -> torch.Tensor:
        h1 = self._text(ids[:, 0], output_hidden_states=True).hidden_states[-2]
        out2 = self._text2(ids[:, 1], output_hidden_states=True)
        cross = torch.cat([h1, out2.hidden_states[-2].to(h1.dtype)], dim=2)
        pooled = self.pooled_at_end_token(ids[:, 1], out2.last_hidden_state)
        # an empty prompt is [BOS, EOS, pad...]: zeros instead (on the device: no host sync, capturable)
        keep = (ids[:, 0, 1] != self.tokenizer.eos_token_id).to(cross.dtype)
        return pack(cross * keep.view(-1, 1, 1), pooled * keep.view(-1, 1).to(pooled.dtype), self.vector_rows)

    def pooled_at_end_token(self, ids: torch.Tensor, last_hidden: torch.Tensor) -> torch.Tensor:
        """The second encoder's projected output at each prompt's first end token, where the WebUI's
        embedder (open_clip: the highest id, which is the end token in its vocabulary) reads it.
        transformers reads SDXL's config (eos_token_id 2) at the highest id, which with a Textual
        Inversion token spliced in (an id past the vocabulary) is that token: the pooled embedding
        would be trained at a place the WebUI never reads. Without added tokens both are the same."""
        end = (ids == self.tokenizer_2.eos_token_id).int().argmax(dim=-1)  # the first (argmax: first maximum)
        rows = last_hidden[torch.arange(ids.shape[0], device=ids.device), end]
        return self._text2.text_projection(rows)

    def predict(self, noisy: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        unet = self._compiled if self._compiled is not None and torch.is_grad_enabled() else self._unet
        crossattn, pooled = unpack(cond, self.vector_rows, self.pooled_dim)
        added = {"text_embeds": pooled, "time_ids": self.time_ids(noisy)}
        return unet(noisy, t, encoder_hidden_states=crossattn, added_cond_kwargs=added).sample

    def time_ids(self, noisy: torch.Tensor) -> torch.Tensor:
        """(original h, w, crop top, left, target h, w) for latents of this shape; kept per shape, so
        a CUDA graph records a lookup, not a host-to-device copy."""
        b, h, w = noisy.shape[0], noisy.shape[-2] * self.latent_scale, noisy.shape[-1] * self.latent_scale
        key = (b, h, w, noisy.device)
        if key not in self._time_ids:
            self._time_ids[key] = torch.tensor([[h, w, 0, 0, h, w]] * b, device=noisy.device, dtype=torch.float32)
        return self._time_ids[key]

    def add_token(self, token: str, n_vectors: int, init_word: str) -> SdxlSplicedTokens:
        """The token's vectors in both encoders, each initialised from its own embedding of the init word."""
        one = splice_token(self.tokenizer, self._text, token, n_vectors, init_word)
        two = splice_token(self.tokenizer_2, self._text2, token, n_vectors, init_word)
        if one.ids != two.ids:
            raise RuntimeError(f"the two tokenizers gave {token} different ids ({one.ids}, {two.ids})")
        return SdxlSplicedTokens(token, one.ids, dict(zip(TI_KEYS, (one.vectors, two.vectors))))

    def lora_targets(self, text_encoder: bool, conv: bool) -> Dict[str, nn.Module]:
        """kohya's SDXL names, the ones SgmAdapter gives the WebUI's loaded model: the UNet's modules
        after their sgm paths (lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q), the text
        encoders' linears after their transformers paths (lora_te1_..., lora_te2_...)."""
        found = self.unet_lora_modules(conv)
        out = {"lora_unet_" + ldm.replace(".", "_"): m for ldm, m in zip(self.ldm_names(found), found.values())}
        if text_encoder:
            out.update(text_lora_targets(self._text, "lora_te1_"))
            out.update(text_lora_targets(self._text2, "lora_te2_"))
        return out

    def checkpoint_state(self) -> Dict[str, torch.Tensor]:
        """The whole model under sgm's single-file names (what the WebUI and from_single_file load)."""
        from .sdxl_names import diffusers_to_sgm_state
        return diffusers_to_sgm_state(self._unet.state_dict(), self._vae.state_dict(), self._text.state_dict(),
                                      self._text2.state_dict(), self.layers_per_block,
                                      len(self._vae.config.block_out_channels), self.scheduler_config)

    def save_folder(self, folder) -> Path:
        """Write the model as a diffusers StableDiffusionXLPipeline folder."""
        folder = Path(folder)
        for sub, part in zip(PARTS, (self._unet, self._vae, self._text, self._text2)):
            part.save_pretrained(folder / sub)
        self.tokenizer.save_pretrained(folder / "tokenizer")
        self.tokenizer_2.save_pretrained(folder / "tokenizer_2")
        (folder / "scheduler").mkdir(parents=True, exist_ok=True)
        sched = {k: v for k, v in self.scheduler_config.items() if not k.startswith("_")}
        (folder / "scheduler" / "scheduler_config.json").write_text(
            json.dumps({"_class_name": "EulerDiscreteScheduler", **sched}))
        (folder / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=1))
        return folder

    def describe(self) -> str:
        return super().describe().replace("diffusers model", "diffusers SDXL model", 1)


MODEL_INDEX = {
    "_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.31.0",
    "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "CLIPTokenizer"],
    "scheduler": ["diffusers", "EulerDiscreteScheduler"], "force_zeros_for_empty_prompt": True,
    "image_encoder": [None, None], "feature_extractor": [None, None]}


def is_sdxl_folder(path: Path) -> bool:
    """A diffusers folder of SDXL (base): its pipeline class says so, or its UNet takes text_time
    conditioning (the pooled text and the size ids)."""
    index = path / "model_index.json"
    if index.is_file():
        try:
            if json.loads(index.read_text()).get("_class_name", "").startswith("StableDiffusionXL"):
                return True
        except ValueError:
            pass
    return unet_config(path).get("addition_embed_type") == "text_time"


def unet_config(path: Path) -> dict:
    try:
        return json.loads((path / "unet" / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def folder_problems(path: Path) -> List[str]:
    """What an SDXL folder lacks, each naming the file (read before any model or GPU work)."""
    problems = [f"model: {path / f} is missing ({what}); an SDXL diffusers folder has unet, vae, text_encoder,"
                f" text_encoder_2, tokenizer, tokenizer_2 and scheduler" for f, what in NEEDED.items()
                if not (path / f).is_file()]
    if not problems and unet_config(path).get("addition_embed_type") != "text_time":
        problems.append(f"model: {path / 'unet/config.json'} has no addition_embed_type 'text_time': not an SDXL"
                        " base UNet (the SDXL refiner and other variants are not supported)")
    return problems


def load_sdxl_folder(path: Path, device, dtype, masters=(), plain: bool = True) -> DiffusersSdxlAdapter:
    """Each part straight onto the device in its dtype (direct_load.load_folder_parts, as the SD path
    does), as models/plain's modules when every part's config is SDXL's (no diffusers or transformers
    model code imported: seconds of a run's start), else as the libraries' (`plain=False` asks for those)."""
    import time

    from .direct_load import load_folder_parts
    from .plain.parts import classes as plain_classes, unsupported_folder
    problems = folder_problems(path)
    if problems:
        raise ModelLoadError("\n".join(problems))
    device = torch.device(device)
    why = unsupported_folder(path, PARTS) if plain else "asked for (plain=False)"
    try:
        parts, seconds = load_folder_parts(path, PARTS, device, part_dtypes(dtype, masters, PARTS),
                                           plain_classes if why is None else _sdxl_classes, _sdxl_classes)
        t = time.monotonic()
        toks = [folder_tokenizer(path, s) for s in ("tokenizer", "tokenizer_2")]
        sched = folder_scheduler(path)
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"model: cannot load the SDXL diffusers folder {path}: {e}") from None
    adapter = DiffusersSdxlAdapter(parts["unet"], parts["vae"], parts["text_encoder"], parts["text_encoder_2"], *toks,
                                   sched, device, dtype, str(path), masters)
    adapter.load_seconds = {**seconds, "tokenizer": time.monotonic() - t}
    adapter.library_reason = why
    adapter.stored_dtypes = folder_dtypes(path)
    return adapter


def _sdxl_classes() -> Dict[str, type]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection
    return {"unet": UNet2DConditionModel, "vae": AutoencoderKL, "text_encoder": CLIPTextModel,
            "text_encoder_2": CLIPTextModelWithProjection}


def folder_dtypes(path: Path) -> Dict[str, torch.dtype]:
    """Each part's weights' dtype in the folder, under its prefix in the sgm single file."""
    from .direct_load import stem_of
    from .sdxl_names import PREFIXES
    from .stored_dtypes import _most_common, file_dtypes
    out = {}
    for part, prefix in PREFIXES.items():
        f = path / part / f"{stem_of(part)}.safetensors"
        common = _most_common(file_dtypes(f).values()) if f.is_file() else None
        if common is not None:
            out[prefix] = common
    return out


def build_sdxl(configs: Tuple[dict, dict, dict, dict], device="cpu", dtype=torch.float32, seed: int = 0,
               masters=(), plain: bool = False) -> Tuple[nn.Module, ...]:
    """(unet, vae, text_encoder, text_encoder_2) from configs, random weights from `seed`, built on
    the device in the dtype each part trains in (a full-size one takes minutes to initialise on a CPU).
    `plain`: models/plain's classes, which an SDXL folder loads into (random-sdxl: a benchmark trains
    what a user's folder trains); else diffusers' and transformers' (the tiny SDXL's folder is theirs,
    so the tests also load a folder the libraries wrote)."""
    unet_cfg, vae_cfg, text_cfg, text2_cfg = configs
    if plain:
        from .plain.parts import classes, text_config, with_class_names
        unet_cfg, vae_cfg, text_cfg = with_class_names(unet_cfg, vae_cfg, text_cfg)
        text2_cfg = text_config(text2_cfg, "CLIPTextModelWithProjection")
        c = classes()
        makers = (lambda: c["unet"](unet_cfg), lambda: c["vae"](vae_cfg), lambda: c["text_encoder"](text_cfg),
                  lambda: c["text_encoder_2"](text2_cfg))
    else:
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
        makers = (lambda: UNet2DConditionModel(**unet_cfg), lambda: AutoencoderKL(**vae_cfg),
                  lambda: CLIPTextModel(CLIPTextConfig(**text_cfg)),
                  lambda: CLIPTextModelWithProjection(CLIPTextConfig(**text2_cfg)))
    old = torch.get_default_dtype()
    out = []
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for part, make in zip(PARTS, makers):
                low = dtype in (torch.bfloat16, torch.float16) and part.split("_2")[0] not in masters
                torch.set_default_dtype(dtype if low else torch.float32)
                with torch.device(device):
                    out.append(make())
    finally:
        torch.set_default_dtype(old)
    return tuple(out)


def sdxl_tokenizers():
    """CLIP-L's tokenizer and SDXL's second (the same vocabulary, padding with '!'), offline."""
    from .clip_vocab import clip_tokenizer
    tok, tok2 = clip_tokenizer(), clip_tokenizer()
    tok2.pad_with("!")  # as SDXL's tokenizer_2 folder loads: its saved copy tokenizes "a photo!" the same
    return tok, tok2


def adapter_from_configs(configs, source: str, device="cpu", dtype=torch.float32, seed: int = 0,
                         prediction_type: str = "epsilon", masters=(), plain: bool = False) -> DiffusersSdxlAdapter:
    from .tiny_sdxl_diffusers import SCHEDULER
    unet, vae, te1, te2 = build_sdxl(configs, device, dtype, seed, masters, plain)
    sched = dict(SCHEDULER, prediction_type=prediction_type)
    return DiffusersSdxlAdapter(unet, vae, te1, te2, *sdxl_tokenizers(), sched, device, dtype, source, masters)
