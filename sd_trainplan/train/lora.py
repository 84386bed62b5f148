"""A small LoRA of our own (down, up, alpha; kohya key names), added with forward hooks.

The WebUI's environment has no peft, and installing it would change the host's packages, so
this is the one place we write a layer ourselves. The base module is never modified: the
hook adds up(down(x)) * alpha/rank to its output, and removing the hook restores it exactly.
"""
from __future__ import annotations

import math
from typing import Dict, List

import torch
from torch import nn
import torch.nn.functional as F

from ..models.ldm_adapter import is_linear


class LoRA(nn.Module):
    def __init__(self, base: nn.Module, rank: int, alpha: float):
        super().__init__()
        if is_linear(base):  # nn.Linear, or a host's own linear layer (in/out features, a 2-D weight)
            self.down = nn.Linear(base.in_features, rank, bias=False)
            self.up = nn.Linear(rank, base.out_features, bias=False)
        elif isinstance(base, nn.Conv2d):
            self.down = nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
            self.up = nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            raise TypeError(f"LoRA supports Linear and Conv2d, not {type(base).__name__}")
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)  # starts as an exact no-op
        self.rank, self.alpha = rank, float(alpha)
        self.scale = self.alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled() and x.dtype != self.down.weight.dtype:
            x = x.to(self.down.weight.dtype)  # without autocast (CPU fp32 runs) the dtypes must agree
        h = self.down(x)
        # the scale folded into the rank-r up weight (a few thousand numbers), not applied to the output: a
        # pass over the layer's whole output forward and one backward the less (on SD1.5 at BS 4, 0.7 ms of
        # a 37 ms LoRA update, bench/profile_update.py). Summing into the output in place with addmm_/
        # baddbmm_ was tried too: cuBLAS's batched rank-4 products were slower than the sum they saved.
        w = self.up.weight * self.scale
        return F.linear(h, w) if isinstance(self.up, nn.Linear) else F.conv2d(h, w)


class LoRASet(nn.Module):
    """All LoRA modules of a run, keyed by kohya name, attached to their base modules by hooks."""

    def __init__(self, targets: Dict[str, nn.Module], rank: int, alpha: float, device, seed: int):
        super().__init__()
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            self.names: List[str] = sorted(targets)
            self.loras = nn.ModuleList(LoRA(targets[n], rank, alpha) for n in self.names)
        finally:
            torch.random.set_rng_state(state)
        self.to(device)
        self._handles = []
        self._targets = targets

    def attach(self) -> None:
        self.detach()
        for name, lora in zip(self.names, self.loras):
            self._handles.append(self._targets[name].register_forward_hook(_adder(lora)))

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def kohya_state(self, dtype=torch.float16) -> Dict[str, torch.Tensor]:
        out = {}
        for name, lora in zip(self.names, self.loras):
            out[f"{name}.lora_down.weight"] = lora.down.weight.detach().to("cpu", dtype).contiguous()
            out[f"{name}.lora_up.weight"] = lora.up.weight.detach().to("cpu", dtype).contiguous()
            out[f"{name}.alpha"] = torch.tensor(lora.alpha, dtype=dtype)
        return out


def _adder(lora: LoRA):
    def hook(module, inputs, output):
        return output + lora(inputs[0]).to(output.dtype)
    return hook
