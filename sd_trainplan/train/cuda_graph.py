"""The fast path: each weight update replayed from one CUDA graph.

At the batch sizes people use, a diffusion training step on a big GPU is bound by launching
hundreds of small kernels, not by arithmetic. The whole update (every micro-batch's forward
and backward, the gradient clip, the fused capturable AdamW step, freeing the gradients) is
recorded once per bucket shape and replayed; each update only copies its index tensors into
the graph's static buffers. The update is the same function as in eager mode (step.py), so
the results are the same. Gradients are freed at the end of the recorded update, as in eager
mode, so the graph's memory peaks where an eager step's does.

Capture is attempted only where it can work (CUDA, bf16 or fp32, no loss scaler, conditioning
cached or encodable from token ids, no prior preservation); otherwise, or if
capture fails, the loop runs eagerly and says why. With several processes the gradients'
bucketed all-reduces (NCCL), overlapped with the backward pass, are recorded inside the update.
"""
from __future__ import annotations

import contextlib
from typing import Dict, List, Optional, Tuple

import torch

from ..models import triton_gate
from .bf16_weights import Bf16Weights
from .dist import OverlappedAverage
from .step import StepMath


def why_not(cfg, adapter, step: StepMath, scaler, opt, world: int, capture: bool = True) -> Optional[str]:
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
                 grad_accum: int, running: torch.Tensor, reducer: OverlappedAverage, capture: bool = True,
                 bf16_modules: Optional[List[torch.nn.Module]] = None):
        """capture=False runs the very same static-buffer functions without recording them (on
        any device), so the fast path's bookkeeping can be checked against eager mode on a CPU.
        bf16_modules: the trained modules, where the update computes with bf16 copies of their
        weights (bf16_weights.py)."""
        self.step, self.opt, self.trainable = step, opt, trainable
        self.max_grad_norm, self.ga, self.running = max_grad_norm, grad_accum, running
        self.capture, self.reducer = capture, reducer
        self.pool = torch.cuda.graph_pool_handle() if capture else None
        self.graphs: Dict[Tuple[int, int], Tuple[object, list]] = {}
        # before the optimizer's state is made: its moments are made in the flat buffers instead
        self.weights = Bf16Weights(opt, bf16_modules, trainable) if bf16_modules else None
        if self.weights is not None and not self.weights.flats:
            self.weights = None  # nothing autocast would cast trains
        try:
            self._make_capturable()
        except Exception:
            if self.weights is not None:  # the run goes on eagerly: each weight its own step count again
                self.weights.release()
            raise
        self.computing = self.weights.computing if self.weights else contextlib.nullcontext

    def _make_capturable(self) -> None:
        """Fused AdamW with capturable state and the LR as device tensors."""
        dev = self.step.device
        for g in self.opt.param_groups:
            if self.capture:
                g["capturable"] = True
                g["lr"] = torch.tensor(float(g["lr"]), device=dev)
        for p in self.trainable:
            st = self.opt.state.get(p)
            if not st:  # a fresh optimizer: create its state now, outside any graph
                self.opt.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=dev if self.capture else "cpu"),
                                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
            elif self.capture:
                st["step"] = (st["step"] if torch.is_tensor(st["step"]) else torch.tensor(float(st["step"]))) \
                    .to(dev, torch.float32)

    def release(self) -> None:
        """Back to eager mode after a failed recording: plain LRs, no half-made gradients."""
        self.graphs.clear()
        self.reducer.reset()
        if self.weights is not None:
            self.weights.release()
        self.opt.zero_grad(set_to_none=True)
        for g in self.opt.param_groups:
            if torch.is_tensor(g["lr"]):
                g["lr"] = float(g["lr"])
        if self.capture:
            torch.cuda.synchronize()

    def set_lr(self, lr: float) -> None:
        for g in self.opt.param_groups:
            if torch.is_tensor(g["lr"]):
                g["lr"].fill_(lr * g.get("lr_scale", 1.0))
            else:
                g["lr"] = lr * g.get("lr_scale", 1.0)

    def _inputs(self, u: int):
        mbs = [self.step.micro(u, m) for m in range(self.ga)]
        return mbs[0].bucket, [self.step.tensors(mb, pinned=self.capture) for mb in mbs]

    def _micros(self, bucket, inputs, reduce: bool = False) -> None:
        for m, (rows, keys, items, ids) in enumerate(inputs):
            loss = self.step.loss(bucket, rows, keys, items, ids) / self.ga
            if reduce and m == len(inputs) - 1:
                self.reducer.arm()  # the last micro-batch's backward all-reduces its buckets as they fill
            loss.backward()
            self.running.add_(loss.detach())
        if reduce:
            self.reducer.finish()

    def _update(self, bucket, inputs) -> None:
        if self.weights is not None:  # one process (bf16_weights.applies): nothing to all-reduce
            with self.computing():
                self._micros(bucket, inputs)
                self.weights.take_grads()
            self.weights.step(self.trainable, self.max_grad_norm)  # the clip, and AdamW for every weight
        else:
            self._micros(bucket, inputs, reduce=True)  # NCCL's all-reduces are recorded too
            if self.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.trainable, self.max_grad_norm, foreach=True)
            self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def run(self, u: int) -> None:
        """One weight update (the gradients must be None on entry, as they are after any update)."""
        bucket, fresh = self._inputs(u)
        if bucket not in self.graphs:
            self.graphs[bucket] = self._record(bucket, fresh)
        graph, static = self.graphs[bucket]
        for dst_m, src_m in zip(static, fresh):
            for dst, src in zip(dst_m, src_m):
                if dst is not None:
                    dst.copy_(src, non_blocking=True)
        graph.replay()

    def _record(self, bucket, fresh):
        """Warm up the micro-batches (forward and backward only: the weights and optimizer state do
        not change), drop what the warm-up left, then record the whole update. Our Triton kernels
        are on by default in both (models/triton_gate.py): they are faster only where replayed."""
        with triton_gate.graphed_update():
            return self._warm_and_record(bucket, fresh)

    def _warm_and_record(self, bucket, fresh):
        static = [[t.to(self.step.device, copy=True) if t is not None else None for t in m] for m in fresh]
        before = self.running.clone()
        if self.capture:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()  # cached blocks of the main stream are no use to the side stream
            s = torch.cuda.Stream()
            s.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(s), self.computing():
                self._micros(bucket, static)
            torch.cuda.current_stream().wait_stream(s)
        else:
            with self.computing():
                self._micros(bucket, static)
        self.opt.zero_grad(set_to_none=True)
        self.running.copy_(before)
        self.reducer.learn()  # the warm-up's backward showed the order the gradients come in
        if not self.capture:
            return _Eager(lambda: self._update(bucket, static)), static
        # the warm-up's blocks sit in the side stream's cache: give them back so that the graph's
        # own pool is the only copy of this memory (else the peak counts it twice)
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        graph = torch.cuda.CUDAGraph()
        with getattr(self.step.adapter, "capture_context", contextlib.nullcontext)():
            with torch.cuda.graph(graph, pool=self.pool):
                self._update(bucket, static)
        return graph, static


class _Eager:
    """Stands where a CUDA graph would (capture=False): replay() runs the recorded function."""

    def __init__(self, fn):
        self.fn = fn

    def replay(self) -> None:
        with triton_gate.graphed_update():  # as the graph would have recorded it
            self.fn()
