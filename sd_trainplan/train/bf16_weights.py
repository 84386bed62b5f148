"""Dreambooth's fast-path update computing with bf16 copies of the weights kept beside the fp32 masters.

Under bf16 autocast an fp32 weight is cast to bf16 at each use in the forward pass, and its bf16
gradient cast back to fp32 in the backward; the gradient clip then reads the fp32 gradients twice
and fused AdamW once more. For SD1.5's 860 million UNet weights that is 15.9 of Dreambooth BS 4's
54.9 ms of kernel time an update (H200 profile, bench/results/2026-12-01-NVIDIA_H200-db4-graphed-profile.json:
casts 6.1, clip 2.9, AdamW 6.9).

Here, for the weights autocast casts (nn.Linear's and nn.Conv2d's), bf16 copies live beside the
masters. The recorded update computes with the copies (each parameter's .data points at its copy
while the update is recorded, and back at its master after: Python does not run at replay), so the
backward pass makes bf16 gradients; one Triton kernel then clips them, steps AdamW on the masters
and rewrites the copies (adamw_triton.py). The forward pass is autocast's arithmetic (the same
weights, rounded to bf16 the same way); the step rounds in another order than torch's fused AdamW.

Masters, moments, copies and gradients each sit in one flat buffer per parameter group (one kernel
launch each, not 700); the parameters and AdamW's state are views into them, so checkpoints,
exports, validation and samples see the fp32 tensors they saw before. The other trainable weights
(the norms') step with torch's fused AdamW as before, clipped by the same coefficient.

Used where the graphed update is (cuda_graph.py), for Dreambooth in bf16 with one micro-batch an
update on one process (`applies`), with Triton 3 (triton_gate.py: `adamw`, on by default there).
"""
from __future__ import annotations

import contextlib
from typing import List

import torch
from torch import nn

from ..models import triton_gate
from ..models.group_norm_nhwc import triton_cdiv
from .dist import laid_out_like

BLOCK = 4096
PAD = 64  # each tensor starts at a multiple of 64 elements of its flat buffer (aligned vector loads)
GIVE_BACK_BYTES = 2**26  # a smaller buffer fits in the allocator's cached blocks: nothing to give back


def applies(cfg, compute: torch.dtype, world: int, device: torch.device) -> bool:
    """Whether a run's graphed update uses this."""
    if not (cfg.method == "dreambooth" and compute == torch.bfloat16 and cfg.grad_accum == 1 and world == 1
            and not cfg.compile):
        return False
    with triton_gate.graphed_update():  # where the kernel would run, as the gate's default asks
        return triton_gate.usable(torch.empty(0, device=device, dtype=torch.bfloat16), "adamw")


def cast_weights(modules: List[nn.Module], trainable) -> set:
    """The trainable fp32 weights that autocast casts to bf16 at each use: nn.Linear's and nn.Conv2d's."""
    mine = {id(p) for p in trainable}
    return {id(p) for m in modules for mod in m.modules() if isinstance(mod, (nn.Linear, nn.Conv2d))
            for p in mod.parameters(recurse=False) if id(p) in mine and p.dtype == torch.float32}


class _Flat:
    """One parameter group's cast weights: masters, moments, bf16 copies and gradients, flat."""

    def __init__(self, opt, group: dict, params: List[nn.Parameter]):
        """Built before AdamW's state exists (a fresh run) or from the state a checkpoint restored.
        One buffer at a time, each old tensor freed before the next buffer is made, so that setting
        up costs no more memory than the update will. Should one fail (out of memory), the run goes
        on eagerly: each weight is left with a whole AdamW state of its own."""
        try:
            self._build(opt, group, params)
        except Exception:
            for p in params:
                st = opt.state[p]  # a fresh run's state, part made; a restored one is whole throughout
                for key in ("exp_avg", "exp_avg_sq"):
                    if key not in st:
                        st[key] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["step"] = st["step"].clone() if "step" in st else torch.zeros((), device=p.device)
            raise

    def _build(self, opt, group: dict, params: List[nn.Parameter]) -> None:
        dev = params[0].device
        self.starts, n = [], 0
        for p in params:
            self.starts.append(n)
            n += -(-p.numel() // PAD) * PAD
        self.group, self.params, self.n = group, params, n
        states = [opt.state.get(p) or {} for p in params]
        self.step = torch.zeros((), dtype=torch.float32, device=dev)  # one count: all the group's weights step together
        if "step" in states[0]:
            self.step.copy_(torch.as_tensor(states[0]["step"], dtype=torch.float32))
        self.master = self._flat(torch.float32, [p.data for p in params])
        self.masters = self._views(self.master)
        for p, master in zip(params, self.masters):
            p.data = master  # the old storage goes
        self._give_back()
        for key in ("exp_avg", "exp_avg_sq"):
            setattr(self, key, self._flat(torch.float32, [st.get(key) for st in states]))
            for p, moment in zip(params, self._views(getattr(self, key))):
                opt.state[p][key] = moment
            self._give_back()
        self.weight = self._flat(torch.bfloat16, [])
        self.weight.copy_(self.master)
        self.weights = self._views(self.weight)
        self.grad = self._flat(torch.bfloat16, [])
        self.grads = self._views(self.grad)
        # one tensor, so a checkpoint saves the count every weight has
        for p in params:
            opt.state[p]["step"] = self.step

    def _flat(self, dtype: torch.dtype, values) -> torch.Tensor:
        """A zeroed flat buffer, with `values` (tensors or None, one per parameter) copied in."""
        flat = torch.zeros(self.n, device=self.params[0].device, dtype=dtype)
        for view, v in zip(self._views(flat), values):
            if v is not None:
                view.copy_(v)
        return flat

    def _give_back(self) -> None:
        """The freed tensors' blocks back to the driver, so that the next flat buffer (one block, larger
        than any of them) can take their memory. Not for small buffers (the start thread's trial runs
        while the model loads: emptying the cache then would only stall it)."""
        if self.master.is_cuda and self.n * 4 > GIVE_BACK_BYTES:
            torch.cuda.empty_cache()

    def _views(self, flat: torch.Tensor) -> List[torch.Tensor]:
        return [laid_out_like(flat[s:s + p.numel()], p) for p, s in zip(self.params, self.starts)]

    def step_(self, coef: torch.Tensor) -> None:
        g = self.group
        beta1, beta2 = g["betas"]
        lr = torch.as_tensor(g["lr"], device=self.step.device, dtype=torch.float32)
        self.step.add_(1)
        scalars = torch.stack([lr * g["weight_decay"], lr / (1 - beta1 ** self.step),
                               (1 - beta2 ** self.step).sqrt(), coef.to(torch.float32)])
        _kernels().adamw_master[(triton_cdiv(self.n, BLOCK),)](
            self.grad, self.master, self.exp_avg, self.exp_avg_sq, self.weight, scalars, self.n, beta1, beta2,
            g["eps"], BLOCK=BLOCK, num_warps=8)

    def sum_squares(self) -> torch.Tensor:
        parts = torch.empty(triton_cdiv(self.n, BLOCK), device=self.grad.device, dtype=torch.float32)
        _kernels().sum_squares[(parts.numel(),)](self.grad, parts, self.n, BLOCK=BLOCK, num_warps=8)
        return parts.sum()


class Bf16Weights:
    def __init__(self, opt, modules: List[nn.Module], trainable):
        cast = cast_weights(modules, trainable)
        self.flats = [_Flat(opt, g, [p for p in g["params"] if id(p) in cast]) for g in opt.param_groups
                      if any(id(p) in cast for p in g["params"])]
        self.opt = opt

    @contextlib.contextmanager
    def computing(self):
        """Inside: the cast weights are their bf16 copies (record the forward and backward here)."""
        for f in self.flats:
            for p, w in zip(f.params, f.weights):
                p.data = w
        try:
            yield
        finally:
            for f in self.flats:
                for p, m in zip(f.params, f.masters):
                    p.data = m

    def take_grads(self) -> None:
        """The copies' gradients into the flat buffers (inside `computing`, after the backward)."""
        for f in self.flats:
            grads = [p.grad for p in f.params]
            if any(g is None or g.dtype != torch.bfloat16 for g in grads):
                raise RuntimeError("bf16 weights: a weight got no bf16 gradient")
            torch._foreach_copy_(f.grads, grads)
            for p in f.params:
                p.grad = None

    def step(self, trainable, max_grad_norm: float) -> None:
        """Clip (the cast weights' gradients and the rest's by one norm, as clip_grad_norm_), step."""
        rest = [p.grad for p in trainable if p.grad is not None]
        dev = self.flats[0].step.device
        coef = torch.ones((), device=dev)
        if max_grad_norm:
            sq = sum(f.sum_squares() for f in self.flats)
            if rest:
                sq = sq + torch.stack(torch._foreach_norm(rest)).float().square().sum()
            coef = (max_grad_norm / (sq.sqrt() + 1e-6)).clamp(max=1.0)
            if rest:
                torch._foreach_mul_(rest, coef)
        self.opt.step()  # the rest, with torch's fused AdamW (the cast weights have no .grad now)
        for f in self.flats:
            f.step_(coef)

    def release(self) -> None:
        """Back to eager mode: each weight its own step count again (torch's AdamW adds 1 to each)."""
        for f in self.flats:
            for p in f.params:
                self.opt.state[p]["step"] = f.step.clone()


def try_kernels(device: torch.device) -> None:
    """Both kernels once on a small buffer (the start thread's proof; n a multiple of 16, as in a run)."""
    p = nn.Parameter(torch.ones(PAD * 16, device=device))
    if not triton_gate.usable(p, "adamw"):
        return  # a CPU outside Triton's interpreter
    f = _Flat(type("Opt", (), {"state": {p: {}}})(), {"betas": (0.9, 0.999), "lr": 1e-4, "weight_decay": 1e-2,
                                                           "eps": 1e-8}, [p])
    f.grad.fill_(1.0)
    f.step_(f.sum_squares())


def _kernels():
    from . import adamw_triton
    return adamw_triton
