"""One function from inputs to every planned figure: `compute_plan`.

The UI tables, the CLI tables and `plan --json` all render the `PlanResult` built here,
so the same inputs always show the same numbers everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from . import sources as src
from .conventions import convention_figures
from .dreambooth import dreambooth_figures, dynamic_resolution_figures
from .inputs import InputError, PlanInputs, parse_inputs
from .lr_plan import RECOMMENDED_LR, memory_figures, multiplier_figures, plan_schedule, precision_figures, \
    scaling_figures, sweep_figures
from .quantity import Quantity, fmt
from .run_math import critical_batch_figure, dataset_figures, run_figures, user_updates
from .schedule import Schedule
from .sheet import Sheet, Warning_

GROUPS = {
    "apply": "The plan (what 'Apply to trainer' sends)",
    "run": "Run arithmetic: images, batches, updates, epochs",
    "dreambooth": "Dreambooth formulas (seed 002)",
    "lr": "Learning rate: scaling and precision",
    "lr_range": "LR range test (seed 004)",
    "conventions": "What to type where (each trainer's units)",
    "memory": "GPU memory",
}


@dataclass(frozen=True)
class PlanResult:
    inputs: Optional[PlanInputs]
    quantities: Dict[str, Quantity]
    warnings: Tuple[Warning_, ...]
    errors: Tuple[InputError, ...]
    schedule: Optional[Schedule] = None

    def value(self, id: str) -> Any:
        q = self.quantities.get(id)
        return None if q is None else q.value

    def to_json(self) -> dict:
        return {"inputs": self.inputs.to_json() if self.inputs else None,
                "quantities": {k: q.to_json() for k, q in self.quantities.items()},
                "warnings": [w.to_json() for w in self.warnings],
                "errors": [{"field": e.field, "message": e.message} for e in self.errors]}


def plan_from_raw(raw: Mapping[str, Any]) -> PlanResult:
    """Validate raw form/flag values and compute; errors come back in the result, never raised."""
    inputs, errors = parse_inputs(raw)
    if inputs is None:
        return PlanResult(None, {}, (), tuple(errors))
    return compute_plan(inputs)


def compute_plan(p: PlanInputs) -> PlanResult:
    s = Sheet()
    dataset_figures(s, p)
    dreambooth_figures(s, p)
    dynamic_resolution_figures(s, p)
    sweep_figures(s, p)

    base_lr, lr, lr_how, lr_source = _planned_lr(s, p)
    scaling_figures(s, p, base_lr, "LR before scaling")
    u_user, b_user, u_how = user_updates(p, s.value("train_images"))
    if u_user is not None:
        shape_total, shape_how = u_user, "your run"
    elif p.method == "lora":
        shape_total, shape_how = s.value("lora_steps"), "lora_steps"
    else:
        shape_total, shape_how = s.value("bs_ga_steps") or 1000, "bs_ga_steps" if s.value("bs_ga_steps") else \
            "a nominal 1000"
    multiplier_figures(s, p, shape_total, shape_how, lr if lr is not None else 1.0)
    precision_figures(s, p, lr)

    updates, batches, how, source = _planned_updates(s, p, u_user, b_user, u_how)
    s.section("apply", source)
    if updates is None:
        s.missing("planned_updates", "updates", how, "weight updates to run")
    else:
        s.put("planned_updates", updates, "updates", how, "weight updates to run")
    s.section("apply", lr_source)
    if lr is None:
        s.missing("planned_lr", "LR", lr_how, "learning rate to run")
    else:
        s.put("planned_lr", lr, "LR", lr_how, "learning rate to run")
    run_figures(s, p, updates, batches, how)
    critical_batch_figure(s, p)

    schedule = None
    if lr is not None and updates is not None:
        lo = s.value("lr_lo")
        upe = None
        if s.value("train_images"):
            upe = -(-s.value("train_images") // s.value("effective_batch"))
        schedule = plan_schedule(p, updates, lr, lo, upe)
        if p.warmup >= updates and p.scheduler not in ("constant",):
            s.warn("warmup", f"warm-up of {p.warmup} updates covers the whole run of {updates}: the LR never"
                   " reaches its peak (seed 004 uses this on purpose for an LR sweep)")
    convention_figures(s, p, updates, lr, schedule)
    memory_figures(s, p)
    ordered = {k: s.quantities[k] for g in GROUPS for k in s.quantities if s.quantities[k].group == g}
    return PlanResult(p, ordered, tuple(s.warnings), (), schedule)


def _planned_lr(s: Sheet, p: PlanInputs):
    """(base LR, LR, formula, source): yours, else the measured midpoint, else the method's recommendation.

    lr_scaling applies to your LR and to a recommendation, not to measured bounds (they were
    measured at this batch size already).
    """
    if p.lr is not None:
        return _scaled(s, p, p.lr, "your LR", src.PLANNER)
    if s.value("lr_mid") is not None:
        v = s.value("lr_mid")
        return v, v, f"midpoint of the LR bounds = {fmt(v)}", src.SEED_004
    if p.method == "dreambooth":
        v = s.value("lr_for_frames")
        if v is None:
            return None, None, "lr (or images, for the advanced formula's LR)", src.SEED_002
        return _scaled(s, p, v, "advanced formula: lr_for_frames", src.SEED_002)
    v, source = RECOMMENDED_LR[p.method]
    return _scaled(s, p, v, f"recommended for {p.method}", source)


def _scaled(s: Sheet, p: PlanInputs, lr: float, what: str, source: str):
    """(base LR, LR to run, formula, source) after the chosen LR scaling."""
    eb = s.value("effective_batch")
    if p.lr_scaling == "linear":
        return lr, lr * eb, f"{what} x BS x GA x P = {fmt(lr)} x {eb} = {fmt(lr * eb)} (linear scaling)", source
    if p.lr_scaling == "sqrt":
        v = lr * eb ** 0.5
        return lr, v, f"{what} x sqrt(BS x GA x P) = {fmt(lr)} x sqrt({eb}) = {fmt(v)} (sqrt scaling)", source
    return lr, lr, f"{what} = {fmt(lr)}", source


def _planned_updates(s: Sheet, p: PlanInputs, u_user, b_user, u_how):
    if u_user is not None:
        return u_user, b_user, f"yours: {u_how}", src.PLANNER
    if p.epochs is not None:
        return None, None, "images (to turn epochs into updates)", src.PLANNER
    ga = p.grad_accum
    if p.method == "dreambooth":
        v = s.value("scheduled_steps")
        if v is None:
            return None, None, "steps, epochs, or images (for the Dreambooth formula)", src.SEED_002
        return v, v * ga, f"recommended: scheduled_steps = {v} (bs_ga_steps x schedule multiplier)", src.SEED_002
    if p.method == "lora":
        v = s.value("lora_steps")
        return v, v * ga, f"recommended: lora_steps = {v}", src.SEED_001
    return None, None, "steps or epochs (no seed gives a Textual Inversion step count)", src.PLANNER
