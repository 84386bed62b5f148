"""AdamW (decoupled weight decay) without torch.optim, so a run never imports torch._dynamo.

Every torch.optim optimizer imports torch._dynamo the first time it is built or stepped (its methods
are wrapped to keep the compiler out). That import takes 4-6 s on the GPU machine's CPU (issue 16:
it was a quarter of the time from Start to the first update), and a standalone run needs nothing else
from it. This class is the update torch's AdamW makes, called the way torch calls it:

- on CUDA, the one fused kernel, `torch._fused_adamw_` (what AdamW(fused=True) runs, the same call
  from torch 2.1 to 2.14), with the LR as a float or a device tensor (capturable in a CUDA graph);
- elsewhere, the foreach arithmetic of torch's multi-tensor AdamW (torch/optim/adam.py,
  `_multi_tensor_adam` with decoupled weight decay, non-capturable), in the same order.

Its state and `state_dict()` have torch's layout ({"state": {index: {step, exp_avg, exp_avg_sq}},
"param_groups": [... "params": [indices]]}), so checkpoints written by torch's AdamW resume here and
the other way round. What torch's Optimizer does besides (hooks, closures, amsgrad, maximize,
differentiable) is not needed by a run and not offered.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Iterable, List

import torch

DEFAULTS = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 1e-2}


class AdamW:
    def __init__(self, groups: Iterable, **defaults):
        """`groups`: parameters, or dicts with "params" and any of lr, betas, eps, weight_decay
        (and keys of ours, such as lr_scale, kept as they are)."""
        self.defaults = {**DEFAULTS, **defaults}
        groups = list(groups)
        if groups and not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: List[dict] = [{**self.defaults, **g, "params": list(g["params"])} for g in groups]
        self.state: Dict[torch.Tensor, dict] = defaultdict(dict)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    def _state(self, p: torch.Tensor) -> dict:
        st = self.state[p]
        if not st:  # as torch creates it: the step count on the device for the fused kernel, else on the CPU
            where = p.device if p.device.type == "cuda" else "cpu"
            st["step"] = torch.zeros((), dtype=torch.float32, device=where)
            st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return st

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            by_kind = defaultdict(list)  # the fused kernel and foreach ops take one device and dtype per call
            for p in g["params"]:
                if p.grad is not None:
                    by_kind[(p.device, p.dtype)].append(p)
            for (device, _), params in by_kind.items():
                states = [self._state(p) for p in params]
                lists = ([p.grad for p in params], [s["exp_avg"] for s in states],
                         [s["exp_avg_sq"] for s in states], [s["step"] for s in states])
                if device.type == "cuda":
                    _fused(params, *lists, g)
                else:
                    _foreach(params, *lists, g)

    # ---- torch's state_dict layout ----------------------------------------------------------
    def state_dict(self) -> dict:
        index, groups, n = {}, [], 0
        for g in self.param_groups:
            ids = list(range(n, n + len(g["params"])))
            index.update({id(p): i for p, i in zip(g["params"], ids)})
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": ids})
            n += len(ids)
        state = {index[id(p)]: dict(st) for p, st in self.state.items() if st and id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, saved: dict) -> None:
        """A state_dict of this class or of torch's AdamW, for the same parameters in the same order."""
        if len(saved["param_groups"]) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved["param_groups"], self.param_groups)):
            raise ValueError("optimizer: the checkpoint's parameter groups differ from this run's")
        for s, g in zip(saved["param_groups"], self.param_groups):
            for key in ("lr", "betas", "eps", "weight_decay"):
                if key in s:
                    g[key] = s[key]
            for i, p in zip(s["params"], g["params"]):
                if i not in saved["state"]:
                    continue
                st = dict(saved["state"][i])
                where = p.device if p.device.type == "cuda" else "cpu"
                st["step"] = torch.as_tensor(st["step"], dtype=torch.float32).to(where, copy=True)
                for key in ("exp_avg", "exp_avg_sq"):  # copies: the saved dict's tensors stay its own
                    st[key] = st[key].to(p.device, p.dtype, copy=True)
                self.state[p] = st


def _fused(params, grads, exp_avgs, exp_avg_sqs, steps, g) -> None:
    lr = g["lr"]
    if torch.is_tensor(lr) and lr.device != params[0].device:
        lr = lr.to(params[0].device)
    torch._foreach_add_(steps, 1)
    torch._fused_adamw_(params, grads, exp_avgs, exp_avg_sqs, [], steps, amsgrad=False, lr=lr,
                        beta1=g["betas"][0], beta2=g["betas"][1], weight_decay=g["weight_decay"], eps=g["eps"],
                        maximize=False, grad_scale=None, found_inf=None)


def _foreach(params, grads, exp_avgs, exp_avg_sqs, steps, g) -> None:
    lr = float(g["lr"])
    beta1, beta2 = g["betas"]
    torch._foreach_add_(steps, 1)
    if g["weight_decay"]:
        torch._foreach_mul_(params, 1 - lr * g["weight_decay"])
    torch._foreach_lerp_(exp_avgs, grads, 1 - beta1)
    torch._foreach_mul_(exp_avg_sqs, beta2)
    torch._foreach_addcmul_(exp_avg_sqs, grads, grads, 1 - beta2)
    counts = [s.item() for s in steps]
    step_size = [(lr / (1 - beta1 ** c)) * -1 for c in counts]
    bias2_sqrt = [(1 - beta2 ** c) ** 0.5 for c in counts]
    denom = torch._foreach_sqrt(exp_avg_sqs)
    torch._foreach_div_(denom, bias2_sqrt)
    torch._foreach_add_(denom, g["eps"])
    torch._foreach_addcdiv_(params, exp_avgs, denom, step_size)
