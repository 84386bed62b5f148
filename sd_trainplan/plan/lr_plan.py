"""Learning-rate figures: the schedule's step multiplier, LR scaling, the precision floor,
and the LR range test plan (seeds 001, 002, 003, 004)."""
from __future__ import annotations

import math
from typing import Optional

from . import schedule as sched
from . import sources as src
from .inputs import PlanInputs, default_weight_scale
from .quantity import fmt, round_half_up
from .sheet import Sheet

EPS = {"bf16": 2.0 ** -7, "fp16": 2.0 ** -10, "fp32": 2.0 ** -23}
RECOMMENDED_LR = {"lora": (1e-4, src.SEED_001 + ": UNet 1e-4, TE 5e-5"),
                  "ti": (5e-3, src.A1111_UI + ": embedding LR 0.005")}
LORA_BASE_STEPS = 2000  # seed 001: "2000 is generally considered a good starting step count" at BS 1
CAUTION = ("caution (seed 004): a later FollowFox post found runs at the found midpoint looked under-trained;"
           " treat the bounds as a range, not a verdict")


def plan_schedule(p: PlanInputs, total: int, peak_lr: float, lo: Optional[float] = None,
                  updates_per_epoch: Optional[int] = None) -> sched.Schedule:
    """The schedule the plan implies, for the multiplier, the plot and the trainer."""
    total = max(1, total)
    if sched.looks_like_a1111(p.scheduler):
        pieces = sched.parse_a1111(p.scheduler, total)
        return sched.Schedule("a1111", max(r for r, _ in pieces), total, pieces=pieces)
    if p.scheduler == "cyclical":
        base = lo if lo is not None and lo < peak_lr else peak_lr / 4  # Smith: base about max/3 to max/4
        size = 4 * updates_per_epoch if updates_per_epoch else total // 2  # Smith: 2-10 x an epoch
        return sched.Schedule("cyclical", peak_lr, total, base_lr=base, step_size=max(1, min(size, total)))
    return sched.Schedule(p.scheduler, peak_lr, total, warmup=min(p.warmup, total))


def multiplier_figures(s: Sheet, p: PlanInputs, shape_total: int, shape_how: str, peak_lr: float) -> sched.Schedule:
    s.section("dreambooth", src.SEED_002)
    lo = s.value("lr_lo")
    upe = _updates_per_epoch(s)
    sc = plan_schedule(p, shape_total, peak_lr, lo, upe)
    if p.scheduler == "constant" and p.warmup:
        s.warn("warmup", f"'constant' has no warm-up (as diffusers' constant): the {p.warmup} warm-up updates are"
               " ignored; choose constant_with_warmup to ramp the LR up first")
    m = sched.step_multiplier(sc)
    seed = sched.SEED_MULTIPLIERS.get(sc.name, "not in the seed")
    s.put("scheduler_multiplier", m, "x", f"peak LR / mean LR of {_describe(sc)} over {shape_total} updates"
          f" ({shape_how}) = {fmt(m)}; seed 002's table: {seed}", "schedule step multiplier")
    bs_ga = s.value("bs_ga_steps")
    if bs_ga is None:
        s.missing("scheduled_steps", "updates", "images", "steps for your schedule")
    else:
        st = round_half_up(bs_ga * m)
        s.put("scheduled_steps", st, "updates", f"bs_ga_steps x multiplier = {bs_ga} x {fmt(m)} = {st}",
              "steps for your schedule")
        if m > 2.5:
            s.warn("scheduler", f"this schedule averages 1/{fmt(m)} of its peak LR; seed 002 warns that a high"
                   " multiplier can distort images at high and low CFG")
    return sc


def _describe(sc: sched.Schedule) -> str:
    if sc.name == "a1111":
        return "the WebUI schedule " + ", ".join(f"{fmt(r)}:{u}" for r, u in sc.pieces)
    if sc.name == "cyclical":
        return f"cyclical {fmt(sc.base_lr)}..{fmt(sc.peak_lr)} (half-cycle {sc.step_size})"
    return sc.name + (f" with {sc.warmup} warm-up" if sc.warmup and sc.name != "constant" else "")


def _updates_per_epoch(s: Sheet) -> Optional[int]:
    train, eb = s.value("train_images"), s.value("effective_batch")
    return max(1, math.ceil(train / eb)) if train else None


def scaling_figures(s: Sheet, p: PlanInputs, lr: Optional[float], lr_how: str) -> None:
    eb = s.value("effective_batch")
    s.section("lr", src.DIFFUSERS)
    if lr is None:
        s.missing("scaled_lr_linear", "LR", "lr", "LR scaled linearly (--scale_lr)")
        s.section("lr", src.KRIZHEVSKY).missing("scaled_lr_sqrt", "LR", "lr", "LR scaled by sqrt")
    else:
        v = lr * eb
        s.put("scaled_lr_linear", v, "LR", f"LR x BS x GA x P = {fmt(lr)} x {eb} = {fmt(v)} ({lr_how})",
              "LR scaled linearly (--scale_lr)")
        s.section("lr", src.KRIZHEVSKY)
        v = lr * math.sqrt(eb)
        s.put("scaled_lr_sqrt", v, "LR", f"LR x sqrt(BS x GA x P) = {fmt(lr)} x sqrt({eb}) = {fmt(v)}",
              "LR scaled by sqrt")
    s.section("lr", src.SEED_001)
    ls = max(1, round_half_up(LORA_BASE_STEPS / eb))
    s.put("lora_steps", ls, "updates", f"{LORA_BASE_STEPS} / (BS x GA x P) = {LORA_BASE_STEPS} / {eb} = {ls}"
          " (at UNet LR 1e-4, TE LR 5e-5)", "LoRA steps")


def precision_figures(s: Sheet, p: PlanInputs, lr: Optional[float]) -> None:
    s.section("lr", src.IEEE754)
    dtype = "fp32" if p.weights == "mixed" else p.weights
    ws = p.weight_scale if p.weight_scale is not None else default_weight_scale(p.method)
    eps = EPS[dtype]
    floor = ws * eps / 2
    masters = " (mixed precision keeps fp32 masters)" if p.weights == "mixed" else ""
    s.put("precision_floor", floor, "LR", f"|w| x eps / 2 = {fmt(ws)} x 2^{int(math.log2(eps))} / 2 = {fmt(floor)}"
          f" for {dtype} weights{masters}; assumed |w| = {fmt(ws)}. An Adam update of about LR smaller than this"
          " rounds away: the weight does not move. Seed 002 ties the lowest LR to each format's range; it is the"
          " epsilon that matters.", "precision floor")
    if lr is not None and lr < floor:
        s.warn("lr", f"LR {fmt(lr)} is below the precision floor {fmt(floor)} of {dtype} weights (|w| ~ {fmt(ws)}):"
               " most updates round to nothing. Use mixed precision (fp32 masters) or a higher LR.")


def sweep_figures(s: Sheet, p: PlanInputs) -> None:
    s.section("lr_range", src.SEED_004)
    train = s.value("train_images")
    per = p.batch_size * p.gpus
    sweep = None
    if p.sweep_epochs is None or train is None:
        s.missing("sweep_steps", "updates", "sweep_epochs and images", "LR range test length")
    else:
        sweep = max(1, round_half_up(train * p.sweep_epochs / per))
        s.put("sweep_steps", sweep, "updates", f"train_images x epochs / (BS x P) = {train} x {fmt(p.sweep_epochs)}"
              f" / {per} = {sweep} (at GA 1; LR rises linearly 0 -> max)", "LR range test length")
    lo = hi = None
    if p.lr_bounds is not None:
        lo, hi = p.lr_bounds
        s.put("lr_lo", lo, "LR", f"measured lower bound = {fmt(lo)}", "lower LR bound", src.MEASURED)
        s.put("lr_hi", hi, "LR", f"measured upper bound = {fmt(hi)}", "upper LR bound", src.MEASURED)
    elif p.bounds_steps is not None and p.sweep_max_lr is not None and sweep is not None:
        (a, b), mx = p.bounds_steps, p.sweep_max_lr
        if b > sweep:
            s.warn("bounds_steps", f"step {b} is past the end of the {sweep}-update sweep")
        lo, hi = mx * a / sweep, mx * b / sweep
        s.put("lr_lo", lo, "LR", f"max_lr x s_lo / sweep_steps = {fmt(mx)} x {a} / {sweep} = {fmt(lo)}",
              "lower LR bound")
        s.put("lr_hi", hi, "LR", f"max_lr x s_hi / sweep_steps = {fmt(mx)} x {b} / {sweep} = {fmt(hi)}",
              "upper LR bound")
    else:
        need = "lr_bounds, or bounds_steps with sweep_max_lr and sweep_steps"
        s.missing("lr_lo", "LR", need, "lower LR bound")
        s.missing("lr_hi", "LR", need, "upper LR bound")
    if lo is None:
        s.missing("lr_mid", "LR", "lr_lo and lr_hi", "midpoint LR")
        s.missing("cyclical_schedule", "", "lr_lo and lr_hi", "cyclical schedule between the bounds")
        return
    mid = (lo + hi) / 2
    s.put("lr_mid", mid, "LR", f"(lr_lo + lr_hi) / 2 = ({fmt(lo)} + {fmt(hi)}) / 2 = {fmt(mid)}; {CAUTION}",
          "midpoint LR")
    upe = _updates_per_epoch(s)
    size = 4 * upe if upe else None
    s.put("cyclical_schedule", {"base_lr": lo, "max_lr": hi, "step_size": size}, "",
          f"triangular between {fmt(lo)} and {fmt(hi)}, half-cycle = 4 x updates per epoch = "
          f"{size if size else 'needs images'} (Smith 2017: 2-10 epochs' worth)", "cyclical schedule between the bounds",
          "Smith 2017, Cyclical Learning Rates (via seed 004)")


def memory_figures(s: Sheet, p: PlanInputs) -> None:
    """GPU memory of the plan on our trainer, and whether (and how) it fits the user's card."""
    from .memory import estimate, fit_advice
    s.section("memory", "bench/step_bench.py measurements, H100, 2026-11-22 (docs/PERFORMANCE.md)")
    arch = {768: "sd2", 1024: "sdxl"}.get(p.base_resolution, "sd1")
    est = estimate(p.method, p.batch_size, p.resolution, arch, train_text_encoder=p.train_text_encoder)
    s.put("vram_estimate", round(est.total_gib, 2), "GiB", f"{est.text()} ({arch.upper()}, BS {p.batch_size},"
          f" {p.resolution} px, AdamW, bf16; per GPU)", "GPU memory (estimate)")
    if p.vram_gb is None:
        s.missing("vram_fit", "", "vram_gb (your GPU's memory)", "fits on your GPU")
        return
    fits, text, settings = fit_advice(p.method, p.batch_size, p.grad_accum, p.resolution, p.vram_gb, arch,
                                      p.train_text_encoder)
    s.put("vram_fit", text, "", "tries, in order: smaller BS with more GA (same effective batch), gradient"
          " checkpointing, 8-bit AdamW", "fits on your GPU")
    if not fits:
        s.warn("batch_size", text)
