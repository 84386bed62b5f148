"""A run whose loss or weights stop being finite ends there, with a message saying what to try.

Once a loss is NaN or infinite, every update after it spreads NaN through what trains: the
samples turn black and an export would hold NaN tensors that the WebUI loads without a word. So:
- the loss is checked where the loop already waits for the host (its log steps: the fast path
  syncs nowhere else), and the message names the updates since the last finite one;
- the trained tensors are checked before anything is written (a checkpoint, the export), so no
  file ever holds a non-finite value and the last good checkpoint is the last one on disk;
- the run then raises NonFiniteLoss: the page, the WebUI's status and the CLI show it as a failed
  run with its message, never as "Done". The LR range test (a probe) reads it as divergence.
Every process checks the same numbers (the loss is averaged, the weights are identical), so
data-parallel processes stop at the same update without talking about it.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Iterable, Optional

import torch

from ..plan.quantity import fmt
from .checkpoint import latest_checkpoint


class NonFiniteLoss(RuntimeError):
    """The run stopped on a NaN/inf loss or weight. `problems` makes the page and the CLI show the
    message as it is (no exception name, no traceback); `step` and `run_dir` say where it stopped."""

    def __init__(self, message: str, step: int, run_dir: Optional[Path]):
        super().__init__(message)
        self.problems = [message]
        self.step, self.run_dir = step, run_dir


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """One host sync for the lot (call it where the loop writes a file anyway)."""
    flags = [torch.isfinite(t).all() for t in tensors if t.is_floating_point()]
    return bool(torch.stack(flags).all().item()) if flags else True


class FiniteGuard:
    def __init__(self, cfg, method, run_dir: Optional[Path], compute: torch.dtype):
        self.cfg, self.method, self.run_dir, self.compute = cfg, method, run_dir, compute

    def loss(self, value: float, first: int, last: int) -> None:
        """`value`: the mean loss of updates first..last (a log interval)."""
        if not math.isfinite(value):
            where = f"at update {last}" if first >= last else f"between updates {first} and {last}"
            self.fail(f"the training loss became {value} {where} of {self.cfg.steps}", last)

    def weights(self, at: int, checked: int) -> bool:
        """Before a checkpoint or export at update `at` (True, or it raises); `checked`: the last update
        whose loss was found finite."""
        if not all_finite(self.method.trainable_state().values()):
            where = f"at update {at}" if checked + 1 >= at else f"between updates {checked + 1} and {at}"
            self.fail(f"the trained weights became non-finite (NaN or inf) {where} of {self.cfg.steps}", at)
        return True

    def fail(self, what: str, step: int) -> None:
        raise NonFiniteLoss(f"Stopped: {what}. {self.kept()} {self.advice()}", step, self.run_dir)

    def kept(self) -> str:
        found = latest_checkpoint(self.run_dir) if self.run_dir is not None else None
        if found:
            return (f"Nothing non-finite was written; the last good checkpoint is {found[1]} (update {found[0]}),"
                    " and no file was exported.")
        return "Nothing non-finite was written and no file was exported (no checkpoint had been saved yet)."

    def advice(self) -> str:
        cfg = self.cfg
        tips = [f"a lower learning rate (it is {fmt(cfg.lr)}; try {fmt(float(f'{cfg.lr / 10:.3g}'))})"]
        if self.compute == torch.float16:
            tips.append("fp32 or bf16 instead of fp16 (precision; fp16 overflows where bf16 does not)")
        elif cfg.precision == "auto" and self.compute != torch.float32:
            tips.append("fp32 (precision)")
        if not cfg.max_grad_norm:
            tips.append("gradient clipping (max_grad_norm 1)")
        return "Try " + "; ".join(tips) + "."
