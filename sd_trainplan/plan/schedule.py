"""Learning-rate schedule math, shared by the planner (its plot and step multiplier) and the trainer.

Pure functions of (schedule, step) -> factor of the peak LR. The shapes follow
`diffusers.optimization.get_scheduler` for the standard names, Smith 2017 for the
triangular cyclical schedule, torch's OneCycleLR defaults for one-cycle, and
AUTOMATIC1111's `"5e-3:100, 1e-3:1000"` syntax (modules/textual_inversion/learn_schedule.py)
for piecewise-constant rates.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

NAMES = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts",
         "polynomial", "cyclical", "one_cycle")
# LR range test sweeps (seed 004's linear 0 -> max; fastai's exponential min -> max): not offered as
# training schedules, used by the range test.
SWEEPS = ("sweep_linear", "sweep_exp")
# The seed's table (seed 002, "lr_scheduler step multipliers"), shown beside our computed value.
SEED_MULTIPLIERS = {"constant": "1", "linear": "2", "cosine": "2", "cosine_with_restarts": "2",
                    "polynomial": "~2"}
POLY_LR_END = 1e-7  # diffusers' default lr_end for "polynomial"
ONE_CYCLE = {"pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4}  # torch OneCycleLR defaults


@dataclass(frozen=True)
class Schedule:
    name: str                 # one of NAMES, or "a1111" for a piecewise string
    peak_lr: float
    total: int                # weight updates the schedule spans
    warmup: int = 0
    cycles: int = 1           # cosine_with_restarts: number of hard restarts
    power: float = 1.0        # polynomial
    base_lr: float = 0.0      # cyclical: lower bound
    step_size: int = 0        # cyclical: half a cycle, in updates (0 = total/2)
    pieces: Tuple[Tuple[float, int], ...] = ()  # a1111: (rate, until_step) pairs


class ScheduleError(ValueError):
    pass


def parse_a1111(text: str, max_steps: Optional[int] = None) -> Tuple[Tuple[float, int], ...]:
    """Parse the WebUI's "rate:until_step, rate:until_step, rate" syntax into (rate, until) pairs.

    Mirrors LearnScheduleIterator: a pair without a step, or with step -1, runs to the end.
    """
    end = max_steps if max_steps is not None else 2**31 - 1
    pieces = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        bits = part.split(":")
        if len(bits) > 2:
            raise ScheduleError(f"'{part}' is not 'rate' or 'rate:step'")
        try:
            rate = float(bits[0])
            until = int(bits[1]) if len(bits) == 2 else -1
        except ValueError:
            raise ScheduleError(f"'{part}' is not 'rate' or 'rate:step'") from None
        if not math.isfinite(rate) or rate <= 0:
            raise ScheduleError(f"rate '{bits[0]}' must be a number > 0")
        if until == -1 or until >= end:
            pieces.append((rate, end))
            break
        if until <= 0 or (pieces and until <= pieces[-1][1]):
            raise ScheduleError(f"steps must increase and be > 0 (got {until})")
        pieces.append((rate, until))
    if not pieces:
        raise ScheduleError("empty schedule")
    return tuple(pieces)


def looks_like_a1111(text: str) -> bool:
    return ":" in text or "," in text


def factor(s: Schedule, step: float) -> float:
    """LR at `step` (0-based update index) as a fraction of the peak LR."""
    return lr_at(s, step) / s.peak_lr if s.peak_lr > 0 else 0.0


def lr_at(s: Schedule, step: float) -> float:
    """The LR used for the update with index `step` (0-based)."""
    name, total, warm = s.name, max(1, s.total), max(0, s.warmup)
    if name == "a1111":
        for rate, until in s.pieces:
            if step < until:
                return rate
        return s.pieces[-1][0]
    if name == "cyclical":
        size = s.step_size or max(1, total // 2)
        cycle = math.floor(1 + step / (2 * size))
        x = abs(step / size - 2 * cycle + 1)
        return s.base_lr + (s.peak_lr - s.base_lr) * max(0.0, 1.0 - x)
    if name == "one_cycle":
        return s.peak_lr * _one_cycle(step, total)
    if name == "sweep_linear":
        return s.peak_lr * min(1.0, (step + 1) / total)
    if name == "sweep_exp":
        lo = s.base_lr if s.base_lr > 0 else s.peak_lr * 1e-4
        return lo * (s.peak_lr / lo) ** min(1.0, step / max(1, total - 1))
    if name == "constant":
        return s.peak_lr
    if step < warm:
        return s.peak_lr * step / warm
    progress = min(1.0, (step - warm) / max(1, total - warm))
    if name == "constant_with_warmup":
        f = 1.0
    elif name == "linear":
        f = max(0.0, 1.0 - progress)
    elif name == "cosine":
        f = 0.5 * (1.0 + math.cos(math.pi * progress))
    elif name == "cosine_with_restarts":
        f = 0.0 if progress >= 1.0 else 0.5 * (1.0 + math.cos(math.pi * ((s.cycles * progress) % 1.0)))
    elif name == "polynomial":
        end = min(POLY_LR_END, s.peak_lr)
        return (s.peak_lr - end) * (1.0 - progress) ** s.power + end
    else:
        raise ScheduleError(f"unknown scheduler '{name}'")
    return s.peak_lr * f


def _one_cycle(step: float, total: int) -> float:
    p = ONE_CYCLE
    up = max(1.0, p["pct_start"] * total - 1)  # as torch's OneCycleLR: phases end at steps up and total-1
    start = 1.0 / p["div_factor"]
    end = start / p["final_div_factor"]
    if step <= up:
        return end_cos(start, 1.0, step / up)
    return end_cos(1.0, end, min(1.0, (step - up) / max(1.0, total - 1 - up)))


def end_cos(a: float, b: float, t: float) -> float:
    """Cosine interpolation from a (t=0) to b (t=1)."""
    return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * t))


def mean_factor(s: Schedule, samples: int = 256) -> float:
    """Mean LR over the schedule as a fraction of its peak (midpoint rule on a fixed grid)."""
    if s.name == "constant":
        return 1.0
    total = max(1, s.total)
    n = min(samples, total)
    peak = s.peak_lr
    acc = 0.0
    for i in range(n):
        acc += lr_at(s, (i + 0.5) * total / n)
    return acc / n / peak if peak > 0 else 0.0


def step_multiplier(s: Schedule) -> float:
    """Seed 002's 'step multiplier' of a schedule, computed as peak LR / mean LR.

    A schedule that averages half its peak needs twice the steps of a constant one
    to move the weights as far, which is what the seed's table (linear/cosine 2) says.
    """
    m = mean_factor(s)
    return 1.0 / m if m > 0 else float("inf")


def curve(s: Schedule, points: int = 200) -> list:
    """(step, lr) pairs for a plot of the whole schedule."""
    total = max(1, s.total)
    n = min(points, total + 1)
    return [(round(i * total / max(1, n - 1)), lr_at(s, i * total / max(1, n - 1))) for i in range(n)]
