"""The fast path: a whole weight update replayed from CUDA graphs.

At the batch sizes people use, a diffusion training step on a big GPU is bound by launching
hundreds of small kernels, not by arithmetic. Captured once per bucket shape, the micro-batch
(forward, backward, gradient accumulation) is one graph and the optimizer update (clip, fused
capturable AdamW, zero) another; each update copies its index tensors into static buffers and
replays. The step is the same function as in eager mode (step.py), so results match.

Capture is attempted only where it can work (CUDA, bf16 or fp32, no loss scaler, conditioning
cached or encodable from token ids, no prior preservation); otherwise, or if capture fails, the
loop runs eagerly and says why.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from .step import StepMath


def why_not(cfg, adapter, step: StepMath, scaler, opt, capture: bool = True) -> Optional[str]:
    """None when the update can be captured, else the reason it is not."""
    if not cfg.cuda_graphs:
        return "turned off (cuda_graphs = false)"
    if capture and adapter.device.type != "cuda":
        return "not on a CUDA device"
    if scaler is not None:
        return "fp16 loss scaling checks for overflow on the host"
    if step.prior is not None:
        return "prior preservation is not captured yet"
    if not step.prompts.cacheable and not step.use_ids:
        return "this model encodes prompts itself (not from token ids)"
    if type(opt).__name__ != "AdamW":
        return f"the {type(opt).__name__} optimizer is not capturable"
    return None


class GraphedUpdate:
    def __init__(self, step: StepMath, opt, trainable: List[torch.nn.Parameter], max_grad_norm: float,
                 grad_accum: int, running: torch.Tensor, capture: bool = True):
        """capture=False runs the very same static-buffer functions without recording them (on
        any device), so the fast path's bookkeeping can be checked against eager mode on a CPU."""
        self.step, self.opt, self.trainable = step, opt, trainable
        self.max_grad_norm, self.ga, self.running = max_grad_norm, grad_accum, running
        self.capture = capture
        self.pool = torch.cuda.graph_pool_handle() if capture else None
        self.micro_graphs: Dict[Tuple[int, int], Tuple[torch.cuda.CUDAGraph, tuple]] = {}
        self.update_graph: Optional[torch.cuda.CUDAGraph] = None
        self._make_capturable()

    def _make_capturable(self) -> None:
        """Fused AdamW with capturable state and LR as device tensors; gradients kept allocated."""
        for g in self.opt.param_groups:
            if self.capture:
                g["capturable"] = True
                g["lr"] = torch.tensor(float(g["lr"]), device=self.step.device)
        for p in self.trainable:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            st = self.opt.state.get(p)
            if st and "step" in st and not torch.is_tensor(st["step"]):
                st["step"] = torch.tensor(float(st["step"]), device=self.step.device)
            elif st and "step" in st:
                st["step"] = st["step"].to(self.step.device)
        if not any(self.opt.state.get(p) for p in self.trainable):  # a fresh optimizer: make its state now
            for p in self.trainable:
                self.opt.state[p] = {"step": torch.zeros((), device=p.device, dtype=torch.float32),
                                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            if torch.is_tensor(g["lr"]):
                g["lr"].fill_(lr * g.get("lr_scale", 1.0))
            else:
                g["lr"] = lr * g.get("lr_scale", 1.0)

    def _static_inputs(self, mb) -> tuple:
        return self.step.tensors(mb)

    def _micro_fn(self, bucket, rows, keys, items, ids):
        loss = self.step.loss(bucket, rows, keys, items, ids) / self.ga
        loss.backward()
        self.running.add_(loss.detach())

    def _update_fn(self):
        if self.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm, foreach=True)
        self.opt.step()
        self.opt.zero_grad(set_to_none=False)

    def _capture(self, fn, *args):
        """Warm up on a side stream (without changing weights), then record."""
        saved = [p.grad.clone() for p in self.trainable]
        if not self.capture:
            fn(*args)  # the warm-up, undone below like the real one
            g = _Eager(fn, args)
        else:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                fn(*args)
            torch.cuda.current_stream().wait_stream(s)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, pool=self.pool):
                fn(*args)
        with torch.no_grad():  # undo the warm-up's effect on the gradients and the running loss
            for p, old in zip(self.trainable, saved):
                p.grad.copy_(old)
        return g

    def micro(self, u: int, m: int) -> None:
        mb = self.step.micro(u, m)
        fresh = self._static_inputs(mb)
        key = mb.bucket
        if key not in self.micro_graphs:
            static = tuple(t.clone() if t is not None else None for t in fresh)
            before = self.running.clone()
            graph = self._capture(self._micro_fn, key, *static)
            self.running.copy_(before)
            self.micro_graphs[key] = (graph, static)
        graph, static = self.micro_graphs[key]
        for dst, src in zip(static, fresh):
            if dst is not None:
                dst.copy_(src, non_blocking=True)
        graph.replay()

    def update(self) -> None:
        if self.update_graph is None:
            self.update_graph = self._capture_update()
        self.update_graph.replay()

    def _capture_update(self) -> torch.cuda.CUDAGraph:
        """The optimizer graph: warm it up on zero gradients with LR 0 and then put the state back."""
        grads = [p.grad.clone() for p in self.trainable]
        state = {p: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in self.opt.state[p].items()}
                 for p in self.trainable}
        lrs = [g["lr"] for g in self.opt.param_groups]
        lrs = [lr.clone() if torch.is_tensor(lr) else lr for lr in lrs]
        weights = [p.detach().clone() for p in self.trainable]
        self.set_lr(0.0)
        if not self.capture:
            self._update_fn()
            graph = _Eager(self._update_fn, ())
        else:
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s):
                self._update_fn()
            torch.cuda.current_stream().wait_stream(s)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                self._update_fn()
        with torch.no_grad():
            for p, gr, w in zip(self.trainable, grads, weights):
                p.grad.copy_(gr)
                p.copy_(w)
                for k, v in state[p].items():
                    if torch.is_tensor(v):
                        self.opt.state[p][k].copy_(v)
            for g, lr in zip(self.opt.param_groups, lrs):
                if torch.is_tensor(lr):
                    g["lr"].copy_(lr)
                else:
                    g["lr"] = lr
        return graph


class _Eager:
    """Stands where a CUDA graph would (capture=False): replay() runs the recorded function."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def replay(self) -> None:
        self.fn(*self.args)
