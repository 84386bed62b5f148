"""An SD1.x/SD2.x single-file checkpoint (.safetensors, the original ldm layout) straight into the plain models.

Each plain part is built from the architecture's shipped configs without memory, and every one of
its parameters is read from the file under its ldm name (ldm_names.py: the names our Dreambooth
export writes), sent to the device and cast there, and becomes the parameter. The VAE's middle
attention is stored as 1x1 convolutions in ldm and as Linear layers here: the same numbers, one
view. SD2's text encoder is stored in open_clip's layout (open_clip_names.py: q, k and v are thirds
of one stacked projection; the file's 24th layer, its projection and logit scale are not used by SD2's
penultimate-layer conditioning and stay unread). Nothing of diffusers is imported, as for a folder
(plain/__init__.py says why that matters).

A .ckpt (a pickle to unpickle whole) and a file missing a tensor load with diffusers'
from_single_file as before (None here).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch
from torch import nn

from ..ldm_names import SD_PREFIXES, unet_name_to_ldm, unet_pairs_for_state, vae_name_to_ldm
from ..open_clip_names import reader
from .blocks import uninitialised
from .parts import SD_PARTS, classes, unsupported_folder

OPEN_CLIP = "cond_stage_model.model."  # SD2's text encoder (ldm's FrozenOpenCLIPEmbedder)


def file_names(part: str, model: nn.Module, keys) -> Optional[Dict[str, Tuple[str, Callable]]]:
    """{parameter name: (its key in the file, how to take it from that tensor)} for one plain part, or
    None if the file lacks one."""
    state = model.state_dict()
    names = list(state)
    whole = lambda t: t  # noqa: E731
    if part == "unet":
        pairs = unet_pairs_for_state(state, model.config["layers_per_block"])
        out = {n: (SD_PREFIXES["unet"] + unet_name_to_ldm(n, pairs), whole) for n in names}
    elif part == "vae":  # the middle attention's Linear weights are 1x1 convolutions in ldm: one view
        blocks = len(model.config["block_out_channels"])
        conv_1x1 = lambda t: t[:, :, 0, 0] if t.ndim == 4 else t  # noqa: E731
        out = {n: (SD_PREFIXES["vae"] + vae_name_to_ldm(n, blocks),
                   conv_1x1 if ".attentions." in n and state[n].ndim == 2 else whole) for n in names}
    elif any(k.startswith(OPEN_CLIP) for k in keys):  # SD2: open_clip's layout (q, k, v stacked)
        out = {}
        for n in names:
            key, take = reader(n)
            out[n] = (OPEN_CLIP + key, take)
    else:  # transformers' CLIP under cond_stage_model.transformer. (very old files without text_model.)
        for strip in (False, True):
            out = {n: (SD_PREFIXES["text_encoder"] + (n.removeprefix("text_model.") if strip else n), whole)
                   for n in names}
            if all(k in keys for k, _ in out.values()):
                return out
        return None
    return out if all(k in keys for k, _ in out.values()) else None


def load_single_file_parts(path: Path, config_dir: Path, device: torch.device,
                           dtypes: Dict[str, torch.dtype]) -> Optional[Dict[str, nn.Module]]:
    """{unet, vae, text_encoder} on `device`, each in its dtype; None where this file is not for them."""
    if Path(path).suffix != ".safetensors" or unsupported_folder(config_dir) is not None:
        return None
    from safetensors import safe_open
    built = {}
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
        read = lru_cache(maxsize=2)(f.get_tensor)  # SD2's q, k, v: three parameters from one stacked tensor
        for part, cls in ((p, classes()[p]) for p in SD_PARTS):
            with uninitialised():
                model = cls.from_folder_config(Path(config_dir) / part)
            where = file_names(part, model, keys)
            if where is None:
                return None
            state = {}
            for name, (key, take) in where.items():
                t = take(read(key)).to(device)
                state[name] = t.to(dtypes[part]) if t.is_floating_point() else t
            model.load_state_dict(state, assign=True)
            built[part] = model
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return built
