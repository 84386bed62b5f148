"""The LR range test (Smith 2017, as seed 004 runs it): one short run whose LR rises from ~0 to a
maximum, scored by the deterministic validation loss. Where the loss starts to fall clearly is
the lower bound; where it flattens (or its minimum) the upper bound. Both, with the steepest
descent and the midpoint, are suggested by name; the bounds feed back into the planner
(`plan --lr-bounds LO,HI`).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

from .atomic import atomic_write, atomic_write_text
from .config import TrainConfig
from .dist import Processes
from .events import Event, Sink
from .plot import ema, line_plot

CAUTION = ("Seed 004's caution: a later FollowFox post found runs at the found midpoint looked under-trained."
           " Treat the bounds as a range to choose from, not a verdict.")
FALL = 0.10          # "starts to fall clearly": the first 10% of the total fall has happened
FLAT = 0.10          # "flattens": within 10% of the total fall from the minimum
DIVERGE = 4.0        # stop when the validation loss exceeds 4x the best so far
VAL_POINTS = 30      # validation passes over the sweep


@dataclass
class Suggestion:
    name: str
    lr: float
    step: int
    method: str


@dataclass
class RangeResult:
    mode: str
    max_lr: float
    min_lr: float
    steps: int
    points: List[dict]
    suggestions: Dict[str, Suggestion]
    diverged: bool
    caution: str = CAUTION
    run_dir: Optional[str] = None
    json_path: Optional[str] = None
    png_path: Optional[str] = None
    message: str = ""
    cyclical: Dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = asdict(self)
        d["suggestions"] = {k: asdict(v) for k, v in self.suggestions.items()}
        return d


def sweep_config(cfg: TrainConfig, mode: str, max_lr: float, min_lr: float, steps: int) -> TrainConfig:
    """The training config of the sweep: GA 1 (seed 004), no checkpoints or samples."""
    val_every = max(1, steps // VAL_POINTS)
    return cfg.replace(scheduler="sweep_linear" if mode == "linear" else "sweep_exp", lr=max_lr, lr_min=min_lr,
                       steps=steps, grad_accum=1, warmup=0, val_every=val_every, log_every=1, save_every=0,
                       sample_every=0, val_split=cfg.val_split or 0.2, noise_scale=False)


def analyse(points: List[dict], mode: str) -> Dict[str, Suggestion]:
    """Named suggestions from the validation points (step, lr, val_loss)."""
    vals = [p for p in points if p.get("val_loss") is not None]
    if len(vals) < 3:
        return {}
    smooth = _smooth3([p["val_loss"] for p in vals])
    start, low = smooth[0], min(smooth)
    drop = start - low
    if drop <= 1e-6 * max(abs(start), 1e-12):
        return {}
    i_min = smooth.index(low)
    out: Dict[str, Suggestion] = {}
    i_lo = next(i for i, v in enumerate(smooth) if v <= start - FALL * drop)
    out["lower"] = Suggestion("lower", vals[i_lo]["lr"], vals[i_lo]["step"],
                              f"first point where the validation loss has made {FALL:.0%} of its total fall")
    i_flat = next(i for i, v in enumerate(smooth) if v <= low + FLAT * drop)
    i_hi = max(i_flat, i_lo + 1) if i_lo + 1 < len(vals) else i_flat
    out["upper"] = Suggestion("upper", vals[i_hi]["lr"], vals[i_hi]["step"],
                              f"where the loss flattens: first point within {FLAT:.0%} of the total fall from its minimum")
    out["minimum"] = Suggestion("minimum", vals[i_min]["lr"], vals[i_min]["step"], "the lowest validation loss")
    slopes = []
    for i in range(1, len(vals)):
        x0, x1 = vals[i - 1]["lr"], vals[i]["lr"]
        if mode == "exp":
            x0, x1 = math.log(x0), math.log(x1)
        slopes.append(((smooth[i] - smooth[i - 1]) / (x1 - x0) if x1 > x0 else 0.0, i))
    _, i_steep = min(slopes)
    out["steepest"] = Suggestion("steepest", vals[i_steep]["lr"], vals[i_steep]["step"],
                                 "steepest fall of the validation loss per unit of LR" + (" (log scale)" if mode == "exp" else ""))
    lo, hi = out["lower"].lr, out["upper"].lr
    out["midpoint"] = Suggestion("midpoint", (lo + hi) / 2, -1, "(lower + upper) / 2, seed 004's choice for a constant LR")
    return out


def _smooth3(v: List[float]) -> List[float]:
    return [sum(v[max(0, i - 1):i + 2]) / len(v[max(0, i - 1):i + 2]) for i in range(len(v))]


def lr_range_test(cfg: TrainConfig, mode: str = "linear", max_lr: Optional[float] = None, min_lr: float = 0.0,
                  steps: Optional[int] = None, adapter=None, sinks: Iterable[Sink] = (),
                  stop: Callable[[], bool] = lambda: False, procs: Processes = Processes()) -> RangeResult:
    """Several processes (`accelerate launch`) sweep as one data-parallel run: the validation loss is
    split between them and summed, the divergence stop is the main process's (train() stops every
    process at the same update), and only the main process analyses and writes the result."""
    from .finite import NonFiniteLoss
    from .loop import RunResult, train
    if mode not in ("linear", "exp"):
        raise ValueError(f"mode: must be linear or exp (got {mode!r})")
    max_lr = max_lr or cfg.lr
    min_lr = min_lr or (max_lr * 1e-4 if mode == "exp" else 0.0)
    steps = steps or cfg.steps
    sweep = sweep_config(cfg, mode, max_lr, min_lr, steps)
    points: Dict[int, dict] = {}
    state = {"best": float("inf"), "diverged": False}

    def collect(ev: Event) -> None:
        if ev.kind == "step" and ev.loss is not None:
            points.setdefault(ev.step, {"step": ev.step})["train_loss"] = ev.loss
            points[ev.step]["lr"] = ev.lr
        if ev.kind == "val":
            if ev.val_loss is not None and not math.isfinite(ev.val_loss):  # NaN/inf: diverged, not a point
                state["diverged"] = True
                return
            p = points.setdefault(ev.step, {"step": ev.step})
            p["val_loss"], p["stable_loss"] = ev.val_loss, ev.stable_loss
            if ev.val_loss is not None:
                state["best"] = min(state["best"], ev.val_loss)
                state["diverged"] = state["diverged"] or ev.val_loss > DIVERGE * state["best"]

    try:
        run = train(sweep, adapter=adapter, sinks=[collect, *sinks], stop=lambda: stop() or state["diverged"],
                    export=False, procs=procs)
    except NonFiniteLoss as e:  # the LR ran the loss to NaN/inf: the sweep has diverged, and ends here
        state["diverged"] = True
        run = RunResult(Path(e.run_dir), e.step, None, True, None, None)
    if not procs.main:  # its sinks saw no events: the main process holds the points
        return RangeResult(mode, max_lr, min_lr, run.steps_done, [], {}, False, run_dir=str(run.run_dir),
                           message="written by the main process")
    from ..plan.schedule import lr_at
    from .config import lr_schedule
    sched = lr_schedule(sweep)
    # the baseline (before any update) is drawn at the sweep's first LR, so a log axis can show it
    pts = [dict(p, lr=p.get("lr") or lr_at(sched, max(0, p["step"] - 1))) for _, p in sorted(points.items())]
    smoothed = ema([p.get("train_loss") for p in pts], 0.9)
    for p, s in zip(pts, smoothed):
        p["train_smooth"] = s
    suggestions = analyse(pts, mode)
    result = RangeResult(mode, max_lr, min_lr, run.steps_done, pts, suggestions, state["diverged"],
                         run_dir=str(run.run_dir))
    if suggestions:
        lo, hi = suggestions["lower"].lr, suggestions["upper"].lr
        result.cyclical = {"base_lr": lo, "max_lr": hi}  # half-cycle: 2-10 epochs (the planner sizes it)
        result.message = (f"bounds {lo:.3g} .. {hi:.3g}, midpoint {(lo + hi) / 2:.3g}; plan with"
                          f" --lr-bounds {lo:.3g},{hi:.3g}")
    else:
        result.message = "the validation loss did not fall: raise the maximum LR (or the sweep length) and run again"
    write_outputs(result, Path(run.run_dir))
    return result


def write_outputs(result: RangeResult, run_dir: Path) -> None:
    result.json_path = str(run_dir / "lr_range.json")
    result.png_path = str(run_dir / "lr_range.png")
    atomic_write_text(result.json_path, json.dumps(result.to_json(), indent=1))
    img = plot_range(result)
    atomic_write(result.png_path, lambda tmp: img.save(tmp, format="PNG"))


def plot_range(result: RangeResult):
    pts = [p for p in result.points if p.get("lr")]
    val = [(p["lr"], p["val_loss"]) for p in pts if p.get("val_loss") is not None]
    series = [("validation loss", [x for x, _ in val], [y for _, y in val], (200, 40, 40)),
              ("training loss (smoothed)", [p["lr"] for p in pts], [p.get("train_smooth") for p in pts], (90, 90, 200))]
    colors = {"lower": (30, 140, 30), "upper": (30, 140, 30), "steepest": (200, 120, 0), "midpoint": (0, 0, 0)}
    marks = [(s.lr, f"{k} {s.lr:.2g}", colors.get(k, (100, 100, 100))) for k, s in result.suggestions.items()
             if k in colors]
    s = result.suggestions
    bands = [(s["lower"].lr, s["upper"].lr)] if "lower" in s else []
    return line_plot(series, f"LR range test ({result.mode} sweep)", "learning rate", "loss",
                     xlog=result.mode == "exp", marks=marks, bands=bands)
