"""One event stream for a run: the CLI's progress bar, the UI and the WebUI's shared.state all
read the same events."""
from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, List, Optional


@dataclass
class Event:
    kind: str                      # start | prepare | step | val | sample | checkpoint | done | stopped | error
    step: int = 0                  # weight updates done
    total: int = 0
    loss: Optional[float] = None   # mean training loss over the last log interval
    lr: Optional[float] = None
    val_loss: Optional[float] = None
    stable_loss: Optional[float] = None  # stabilised training loss (fixed subset, fixed timesteps)
    images_seen: int = 0
    elapsed: float = 0.0
    eta: Optional[float] = None    # seconds left
    path: Optional[str] = None     # file written (checkpoint, sample, export)
    message: str = ""
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in (None, "", {})}


Sink = Callable[[Event], None]


class Emitter:
    def __init__(self, sinks: List[Sink]):
        self.sinks = list(sinks)
        self.t0 = time.monotonic()

    def __call__(self, kind: str, **kw: Any) -> Event:
        ev = Event(kind, elapsed=time.monotonic() - self.t0, **kw)
        if ev.step and ev.total and ev.kind == "step":
            ev.eta = ev.elapsed / ev.step * (ev.total - ev.step)
        for sink in self.sinks:
            sink(ev)
        return ev


class ProgressBar:
    """A terminal progress bar with ETA, loss and LR (no dependency)."""

    def __init__(self, stream=sys.stderr, width: int = 30):
        self.stream, self.width = stream, width
        self.last = ""

    def __call__(self, ev: Event) -> None:
        if ev.kind == "step" and ev.total:
            frac = ev.step / ev.total
            bar = "#" * int(frac * self.width)
            eta = f" ETA {_fmt_time(ev.eta)}" if ev.eta is not None else ""
            loss = f" loss {ev.loss:.4f}" if ev.loss is not None else ""
            lr = f" lr {ev.lr:.3g}" if ev.lr is not None else ""
            self.last = f"\r[{bar:<{self.width}}] {ev.step}/{ev.total}{loss}{lr}{eta}  "
            self.stream.write(self.last)
            self.stream.flush()
        elif ev.kind in ("val",):
            self.stream.write(f"\n  step {ev.step}: validation loss {ev.val_loss:.5f}"
                              + (f", stabilised training loss {ev.stable_loss:.5f}" if ev.stable_loss else "") + "\n")
        elif ev.kind in ("done", "stopped", "error", "checkpoint", "prepare", "start"):
            self.stream.write(("\n" if self.last else "") + f"{ev.kind}: {ev.message}\n")
            self.last = ""
        self.stream.flush()


def _fmt_time(s: Optional[float]) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
