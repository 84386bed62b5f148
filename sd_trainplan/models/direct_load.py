"""A diffusers folder's weights straight onto the training device, each part in the dtype it trains in.

`from_pretrained` builds a part in fp32 on the CPU and fills it from the file; the adapter then moved
it to the GPU and cast it, and Dreambooth cast its UNet back to fp32 from those bf16 values (masters
rounded to bf16 before the first update). Here a part is built with its parameters on no device at all
(accelerate's init_empty_weights, as diffusers itself does), and each tensor of the folder's
safetensors file goes to the device once, is cast there when its dtype differs (fp32 masters stay the
file's values) and becomes the parameter itself. On an H200 the SD1.5 load took about 11 s before
(issue 16); see docs/PERFORMANCE.md for now.

Only the plain layout is read this way: one `*.safetensors` file per part (or shards named by its
index), whose tensors are exactly the part's parameters and persistent buffers. Anything else (.bin
weights, old attention key names that from_pretrained renames, missing or extra keys) is loaded with
from_pretrained. `load_folder_parts` serves the SD folders and the SDXL ones alike.
"""
from __future__ import annotations

import json
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn



def stem_of(part: str) -> str:
    """A part's weights file name without its suffix: transformers' text encoders save `model`,
    diffusers' UNet and VAE `diffusion_pytorch_model`."""
    return "model" if part.startswith("text_encoder") else "diffusion_pytorch_model"


def weight_files(part_dir: Path, stem: str) -> Optional[List[Path]]:
    single = part_dir / f"{stem}.safetensors"
    if single.is_file():
        return [single]
    index = part_dir / f"{stem}.safetensors.index.json"
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        files = [part_dir / n for n in names]
        return files if all(f.is_file() for f in files) else None
    return None


def read_part(part_dir: Path, stem: str, device: torch.device, dtype: torch.dtype) -> Optional[Dict[str, torch.Tensor]]:
    """The part's tensors on `device`, floating ones in `dtype`; None when its files are not the plain
    layout. Needs no model code (diffusers, transformers), only the files."""
    files = weight_files(part_dir, stem)
    if files is None:
        return None
    from safetensors import safe_open
    state = {}
    with ExitStack() as stack:
        for f in files:
            opened = stack.enter_context(safe_open(str(f), framework="pt"))
            for name in opened.keys():
                t = opened.get_tensor(name).to(device)  # in the file's dtype across, then cast on the device
                state[name] = t.to(dtype) if t.is_floating_point() else t
    return state


def assemble(build: Callable[[], nn.Module], state: Dict[str, torch.Tensor], device: torch.device,
             plain: bool = False) -> Optional[nn.Module]:
    """build() makes the part from its config, without memory for its parameters; the read tensors
    become them. None when the names differ (a renamed or missing tensor: from_pretrained knows more).
    `plain`: one of models/plain's, which has no buffers, so all of it is built on the meta device."""
    if plain:
        from .plain.blocks import uninitialised
        with uninitialised():
            model = build()
    else:
        from accelerate import init_empty_weights
        with init_empty_weights(include_buffers=False):  # parameters without memory; buffers real (small)
            model = build()
    expected = set(model.state_dict())
    buffers = {name for name, _ in model.named_buffers()}
    if expected - set(state) or (set(state) - expected) - buffers:
        return None
    model.load_state_dict({k: state[k] for k in expected}, assign=True)  # no second copy
    return model.to(device)  # the buffers that are not in the file (computed at build time)


def load_folder_parts(path: Path, parts: Sequence[str], device: torch.device, dtypes: Dict[str, torch.dtype],
                      model_classes: Callable[[], Dict[str, type]],
                      library_classes: Optional[Callable[[], Dict[str, type]]] = None,
                      ) -> Tuple[Dict[str, nn.Module], Dict[str, float]]:
    """({part: module}, seconds of each step) for a diffusers folder: every part's tensors read onto
    the device (read_part), then `model_classes()` (the model code, imported only now), then each part
    built around its tensors (assemble), or with the library's from_pretrained where they are not the
    plain layout (`library_classes()`'s, when `model_classes` are models/plain's)."""
    t0 = time.monotonic()
    states = {p: read_part(path / p, stem_of(p), device, dtypes[p]) for p in parts}
    t1 = time.monotonic()
    classes = model_classes()
    t2 = time.monotonic()
    out = {}
    for p in parts:
        cls = classes[p]
        plain = hasattr(cls, "from_folder_config")
        build = (lambda c=cls, d=path / p: c.from_folder_config(d)) if plain else _from_config(p, cls, path / p)
        built = None if states[p] is None else assemble(build, states[p], device, plain)
        states[p] = None  # each part's read tensors are its parameters now, or dropped
        if built is None and library_classes is not None:
            cls = library_classes()[p]
        out[p] = built or cls.from_pretrained(path, subfolder=p, torch_dtype=dtypes[p], local_files_only=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return out, {"weights": t1 - t0, "imports": t2 - t1, "build": time.monotonic() - t2}


def _from_config(part: str, cls, part_dir: Path) -> Callable[[], nn.Module]:
    if part.startswith("text_encoder"):  # transformers: a config object, then the model
        return lambda: cls(cls.config_class.from_pretrained(str(part_dir)))
    return lambda: cls.from_config(cls.load_config(str(part_dir)))  # diffusers: from its config dict
