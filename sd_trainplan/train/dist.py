"""Data-parallel training: several processes, each one GPU (or a CPU process with gloo), launched
by `accelerate launch`. accelerate starts the processes and the process group; the counting is
ours: the effective batch is BS x GA x processes, the LR schedule and its warm-up advance once per
weight update (not once per process), each update's samples are keyed by global sample index (so
1 and N processes see the same samples), and only the main process writes files.
"""
from __future__ import annotations

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


def average_grads(procs: Processes, params, reduce_dtype: Optional[torch.dtype] = None) -> None:
    """One all-reduce of every trainable gradient per update, divided by the process count (any
    parameter set works, Textual Inversion's bare vectors included). `reduce_dtype=bf16` sends
    half the bytes (the gradients are averaged in bf16, then kept in fp32), as mixed-precision
    data parallelism usually does; the default sends them as they are."""
    if procs.world == 1:
        return
    import torch.distributed as dist
    grads = [p.grad for p in params if p.grad is not None]
    if reduce_dtype is not None:
        flat = torch.cat([(g / procs.world).to(reduce_dtype).flatten() for g in grads])
    else:
        flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    if reduce_dtype is None:
        flat /= procs.world
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset:offset + n].view_as(g))
        offset += n


def reduce_mean(procs: Processes, value: Optional[float]) -> Optional[float]:
    if procs.world == 1 or value is None:
        return value
    import torch.distributed as dist
    t = torch.tensor([float(value)], dtype=torch.float64, device=procs.device or "cpu")
    dist.all_reduce(t)
    return t.item() / procs.world


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
