"""Data-parallel training: several processes, each one GPU (or a CPU process with gloo), launched
by `accelerate launch`. accelerate starts the processes and the process group; the counting is
ours: the effective batch is BS x GA x processes, the LR schedule and its warm-up advance once per
weight update (not once per process), each update's samples are keyed by global sample index (so
1 and N processes see the same samples), and only the main process writes files.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class Processes:
    """This process's rank, how many there are, and its device (None: the config decides)."""
    rank: int = 0
    world: int = 1
    device: Optional[torch.device] = None

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_environment() -> Processes:
    """The layout `accelerate launch` (or torchrun) set up; one process when launched plainly."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Processes()
    from accelerate import PartialState  # starts the process group: NCCL on GPUs, gloo on CPUs
    state = PartialState()
    return Processes(state.process_index, state.num_processes, torch.device(state.device))


class OverlappedAverage:
    """Averages the gradients across processes while the backward pass is still running, as DDP
    does: the trainable parameters are split into buckets and each bucket's all-reduce starts, on a
    side stream, as soon as its last gradient is accumulated. The buckets follow the order in which
    the first backward pass produced the gradients (until then: reverse definition order, roughly
    the same); that order is the main process's, so every process issues the same collectives in the
    same order, and buckets start strictly in index order. Only the update's last micro-batch is
    reduced (`arm` before its backward, `finish` after). Works recorded in a CUDA graph (NCCL) and
    eagerly (NCCL or gloo)."""

    def __init__(self, procs: Processes, params, reduce_dtype: Optional[torch.dtype] = None,
                 bucket_mib: float = 100.0):
        self.procs, self.dtype, self.bucket_bytes = procs, reduce_dtype, bucket_mib * 2**20
        self.params = [p for p in params if p.requires_grad]
        self.index = {p: i for i, p in enumerate(self.params)}
        self._fill(list(reversed(self.params)))
        self.arrivals: list = []  # parameter indices, in the order backward produced their gradients
        self.learned = False
        self.armed = False
        self.side = torch.cuda.Stream() if self.params and self.params[0].is_cuda else None
        self.nccl = procs.world > 1 and _backend() == "nccl"
        self.hooks = [p.register_post_accumulate_grad_hook(self._arrived) for p in self.params] \
            if procs.world > 1 else []

    def _fill(self, ordered) -> None:
        self.buckets, size, cur = [], 0, []
        for p in ordered:
            cur.append(p)
            size += p.numel() * torch.empty((), dtype=self.dtype or p.dtype).element_size()
            if size >= self.bucket_bytes:
                self.buckets.append(cur)
                size, cur = 0, []
        if cur:
            self.buckets.append(cur)
        self.where = {p: i for i, b in enumerate(self.buckets) for p in b}

    def learn(self) -> None:
        """Rebuild the buckets in the order the backward passes so far produced the gradients (the
        main process's order, on every process). Call on every process at the same point, outside a
        CUDA graph's recording, once at least one backward pass has run."""
        if self.learned or self.procs.world == 1 or not self.arrivals:
            return
        order = broadcast(self.procs, list(dict.fromkeys(self.arrivals)))
        seen = set(order)
        self._fill([self.params[i] for i in order] + [p for p in reversed(self.params) if self.index[p] not in seen])
        self.learned, self.arrivals = True, []

    def arm(self) -> None:
        self.armed = self.procs.world > 1
        if self.armed:
            self.left = [len(b) for b in self.buckets]
            self.next, self.inflight = 0, []

    def _arrived(self, p) -> None:
        if not self.learned:
            self.arrivals.append(self.index[p])
        if not self.armed:
            return
        self.left[self.where[p]] -= 1
        while self.next < len(self.buckets) and self.left[self.next] == 0:
            self._launch(self.next)

    def _launch(self, i: int) -> None:
        import torch.distributed as dist
        self.next = i + 1
        grads = [p.grad for p in self.buckets[i] if p.grad is not None]
        if not grads:
            return
        if self.side is not None:  # the side stream waits for the gradients, the compute stream runs on
            self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side) if self.side is not None else contextlib.nullcontext():
            flat = torch.empty(sum(g.numel() for g in grads), dtype=self.dtype or grads[0].dtype,
                               device=grads[0].device)
            views, offset = [], 0
            for g in grads:
                views.append(laid_out_like(flat[offset:offset + g.numel()], g))
                offset += g.numel()
            # one multi-tensor kernel for the whole bucket (casting as it copies), not one per
            # gradient: 700 small copies each way cost more than the all-reduce they feed
            torch._foreach_copy_(views, grads)
            op = dist.ReduceOp.AVG if self.nccl else dist.ReduceOp.SUM  # gloo has no AVG: finish() divides
            self.inflight.append((grads, views, flat, dist.all_reduce(flat, op=op, async_op=True)))

    def finish(self) -> None:
        """Wait for every bucket (a bucket with a gradient that never came, from a parameter this
        update did not use, goes now), then write the averages back into the gradients."""
        if not self.armed:
            return
        while self.next < len(self.buckets):
            self._launch(self.next)
        if self.side is not None:
            self.side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.side) if self.side is not None else contextlib.nullcontext():
            for grads, views, flat, work in self.inflight:
                work.wait()
                if not self.nccl:  # NCCL averages on the wire (AVG); gloo has only SUM
                    flat.div_(self.procs.world)
                torch._foreach_copy_(grads, views)
        if self.side is not None:
            torch.cuda.current_stream().wait_stream(self.side)
        self.reset()
        self.learn()  # eagerly, the first reduced update teaches the order for the next ones

    def reset(self) -> None:
        """Disarmed, nothing in flight (also after a failed CUDA-graph recording)."""
        self.armed, self.inflight = False, []


def _backend() -> str:
    import torch.distributed as dist
    return dist.get_backend()


def laid_out_like(flat: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """A view of the 1-D `flat` (g.numel() long) with g's shape and strides, so that a copy between
    them is a plain elementwise one even when g is channels-last (the multi-tensor kernel needs equal
    strides). Gradients are dense; anything else gets a contiguous view."""
    dense = g.is_contiguous() or (g.dim() == 4 and g.is_contiguous(memory_format=torch.channels_last))
    return flat.as_strided(g.size(), g.stride()) if dense else flat.view_as(g)


def reduce_mean(procs: Processes, value: Optional[float]) -> Optional[float]:
    if procs.world == 1 or value is None:
        return value
    import torch.distributed as dist
    t = torch.tensor([float(value)], dtype=torch.float64, device=procs.device or "cpu")
    dist.all_reduce(t)
    return t.item() / procs.world


def reduce_sums(procs: Processes, values: list) -> list:
    """Each value summed over the processes (float64, so counts stay exact)."""
    if procs.world == 1:
        return values
    import torch.distributed as dist
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=procs.device or "cpu")
    dist.all_reduce(t)
    return t.tolist()


def broadcast(procs: Processes, obj):
    """The main process's value of `obj`, on every process."""
    if procs.world == 1:
        return obj
    import torch.distributed as dist
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(procs: Processes) -> None:
    if procs.world > 1:
        import torch.distributed as dist
        dist.barrier()


def any_true(procs: Processes, flag: bool) -> bool:
    """True on every process when it is true on any (a Stop must stop them all at the same update,
    or the next all-reduce would wait forever)."""
    if procs.world == 1:
        return flag
    import torch.distributed as dist
    t = torch.tensor([1.0 if flag else 0.0], device=procs.device or "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())
