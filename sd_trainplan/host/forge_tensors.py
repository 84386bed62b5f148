"""Forge's weights are inference tensors; a training step needs plain ones, for the run only.

Forge builds its model under `torch.inference_mode()` (backend/loader.py, forge_model_reload), so
every parameter and buffer is an inference tensor: autograd refuses to save one for a backward
pass ("Inference tensors cannot be saved for backward"), and `requires_grad_` on one raises
outside inference mode. `PlainTensors.swap` replaces each of them, one tensor at a time, by a
plain copy with the same values (so the run never holds a second copy of the model), wherever
the model refers to it: Forge's CLIP registers its token embedding's weight twice (the
`CLIPEmbeddingForTextualInversion` wrapper and the embedding it wraps). `put_back` makes each an
inference tensor again, with its original flags, dtype and device, from the plain tensor's
values: unchanged by Textual Inversion and LoRA, which train beside the weights; after Dreambooth,
the session first copies back the backup it took of what trains (session.WeightBackup).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Iterable, List

import torch
from torch import nn


@dataclass
class Slot:
    module: nn.Module
    table: str          # "_parameters" | "_buffers"
    name: str
    key: int            # which original tensor (several slots can share one)


@dataclass
class Original:
    is_param: bool
    requires_grad: bool
    dtype: torch.dtype
    device: torch.device


class PlainTensors:
    def __init__(self, modules: Iterable[nn.Module]):
        self.modules = list(modules)
        self.slots: List[Slot] = []
        self.originals: Dict[int, Original] = {}
        self.swapped = False

    def swap(self) -> int:
        """Every inference tensor of the modules -> a plain copy (requires_grad False: the method
        decides what trains). Returns how many tensors were swapped."""
        plain: Dict[int, torch.Tensor] = {}
        for root in self.modules:
            for m in root.modules():
                for table in ("_parameters", "_buffers"):
                    for name, t in list(getattr(m, table).items()):
                        if t is None or not (t.is_inference() or id(t) in plain):
                            continue
                        key = id(t)
                        if key not in plain:
                            self.originals[key] = Original(isinstance(t, nn.Parameter), t.requires_grad, t.dtype, t.device)
                            copy = t.detach().clone()  # outside inference mode: a plain tensor
                            plain[key] = nn.Parameter(copy, requires_grad=False) if table == "_parameters" else copy
                        self.slots.append(Slot(m, table, name, key))
                        getattr(m, table)[name] = plain[key]  # the inference tensor is freed once no slot holds it
        self.swapped = True
        return len(plain)

    def put_back(self) -> None:
        """Inference tensors again, one at a time, from the plain tensors' values (a Dreambooth run
        copies its backup into them first), each with its original dtype, device and requires_grad."""
        if not self.swapped:
            return
        done: Dict[int, torch.Tensor] = {}
        with torch.inference_mode():
            for s in self.slots:
                if s.key not in done:
                    o = self.originals[s.key]
                    src = getattr(s.module, s.table)[s.name].detach()
                    t = src.to(device=o.device, dtype=o.dtype, copy=True)
                    done[s.key] = nn.Parameter(t, requires_grad=o.requires_grad) if o.is_param else t
                getattr(s.module, s.table)[s.name] = done[s.key]
        self.slots, self.swapped = [], False
