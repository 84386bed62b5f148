"""How long each phase of a run took: the process's start (imports), checks, load, encode, set-up,
warm-up (the first update: cuDNN's autotuning and the CUDA graph's capture), training, export,
checkpoint. A user waits for all of them, not only for the updates (issue 16), so each one is said in
the log as it ends and kept in the run folder's timings.json.

A phase that ran GPU work is closed only once the GPU has finished it (one synchronisation per phase,
never inside the training loop), so its time is the phase's own and not the next one's.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, Optional

import torch

ORDER = ("start", "checks", "load", "encode", "setup", "warm-up", "training", "validation", "export", "checkpoint")


class Phases:
    def __init__(self, device: Optional[torch.device] = None, started: Optional[float] = None):
        """`started`: time.monotonic() at the process's start, when the caller knows it (the CLI):
        the time before train() (Python's start and the imports) is then the phase 'start'."""
        self.device = device
        self.seconds: Dict[str, float] = {}
        self.t0 = self.t = time.monotonic()
        if started is not None and started <= self.t:
            self.seconds["start"] = self.t - started
            self.t0 = started

    def lap(self, name: str) -> float:
        """Close the phase that ran since the last lap as `name` (added up when a name repeats)."""
        if self.device is not None and self.device.type == "cuda" and torch.cuda.is_initialized():
            torch.cuda.synchronize(self.device)  # (before CUDA starts there is no GPU work to wait for)
        now = time.monotonic()
        dt, self.t = now - self.t, now
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        return dt

    def since_start(self) -> float:
        return time.monotonic() - self.t0

    def summary(self, updates: int = 0) -> str:
        """'load 1.2 s, encode 0.4 s, ..., training 4.3 s (35.8 ms/update), ...' in run order."""
        parts = []
        for name in sorted(self.seconds, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
            s = self.seconds[name]
            per = f" ({1000 * s / updates:.1f} ms/update)" if name == "training" and updates > 0 else ""
            parts.append(f"{name} {s:.2f} s{per}")
        return ", ".join(parts)

    def write(self, run_dir: Path, **extra) -> Path:
        from .atomic import atomic_write_text
        record = {"seconds": {k: round(v, 4) for k, v in self.seconds.items()},
                  "total_s": round(self.since_start(), 4), **extra}
        return atomic_write_text(Path(run_dir) / "timings.json", json.dumps(record, indent=1))
