"""The dtype each tensor of a model has in its files, under single-file (ldm) key names.

A Dreambooth checkpoint is saved in the dtypes of the model it started from (save_precision
"keep"), whatever the run held in memory (frozen parts in fp32 or bf16, what trains as fp32
masters). The answer is a dict of ldm keys and, ending in '.', whole parts (every tensor of the
UNet, VAE or text encoder): a single file gives both, a diffusers folder one dtype per part.
Only the headers are read (safetensors), or the file is memory-mapped (.ckpt/.bin).
"""
from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Dict, Optional

import torch

SAFETENSORS = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
PARTS = {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text_encoder": "cond_stage_model."}


def file_dtypes(path: Path) -> Dict[str, torch.dtype]:
    """Floating-point tensors' dtypes by key (other tensors are never converted, so not listed)."""
    path = Path(path)
    if path.suffix == ".safetensors":
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
        return {k: SAFETENSORS[v["dtype"]] for k, v in header.items()
                if k != "__metadata__" and v.get("dtype") in SAFETENSORS}
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # an old-format (not zip) pickle cannot be memory-mapped
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    sd = sd.get("state_dict", sd)
    return {k: v.dtype for k, v in sd.items() if hasattr(v, "dtype") and v.is_floating_point()}


def _most_common(dtypes) -> Optional[torch.dtype]:
    counts = Counter(dtypes)
    return counts.most_common(1)[0][0] if counts else None


def single_file_dtypes(path: Path) -> Dict[str, torch.dtype]:
    """Every key's dtype, and each part's usual one for keys the file does not have."""
    out: Dict[str, torch.dtype] = dict(file_dtypes(path))
    for prefix in PARTS.values():
        common = _most_common(d for k, d in out.items() if k.startswith(prefix))
        if common is not None:
            out[prefix] = common
    return out


def folder_dtypes(folder: Path) -> Dict[str, torch.dtype]:
    """A diffusers folder: the dtype of each part's weights file (the one from_pretrained reads)."""
    out: Dict[str, torch.dtype] = {}
    for sub, prefix in PARTS.items():
        for name in ("diffusion_pytorch_model.safetensors", "model.safetensors", "diffusion_pytorch_model.bin",
                     "pytorch_model.bin"):
            if (Path(folder) / sub / name).is_file():
                common = _most_common(file_dtypes(Path(folder) / sub / name).values())
                if common is not None:
                    out[prefix] = common
                break
    return out
