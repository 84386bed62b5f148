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
        return self.up(self._down(x)) * self.scale

    def _down(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.is_autocast_enabled() and x.dtype != self.down.weight.dtype:
            x = x.to(self.down.weight.dtype)  # without autocast (CPU fp32 runs) the dtypes must agree
        return self.down(x)

    def add_to(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """out + up(down(x)) * scale. A linear's output takes the up projection as one matrix product
        into itself (beta 1), with the scale folded into the rank-r weight: the up product's own output,
        the scaling and the addition were three passes over the layer's whole output, forward and
        backward (on SD1.5 at BS 4, about 1.5 ms of a 37 ms LoRA update: bench/profile_update.py).
        In place is safe here: a linear keeps its input and weight for its backward, not its output, and
        `out` is no view (autograd would copy the whole gradient twice to write into a view's base)."""
        if not (isinstance(self.up, nn.Linear) and out.dim() in (2, 3) and out.is_floating_point()
                and out.is_contiguous() and not out._is_view() and out.shape[-1] == self.up.out_features):
            return out + self(x).to(out.dtype)  # convolutions, and outputs we do not own the layout of
        h = self._down(x).to(out.dtype)
        w = (self.up.weight * self.scale).to(out.dtype).t()  # [rank, out]
        if out.dim() == 2:
            return out.addmm_(h, w)
        return out.baddbmm_(h, w.expand(out.shape[0], *w.shape))


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
        return lora.add_to(output, inputs[0])
    return hook
