"""Seed 002's Dreambooth formulas: steps per frame, strength F, batch/accumulation correction.

Read the seed for the reasoning; the numbers here follow DESIGN.md §3, including two
corrections shown in the formula text: the seed's standard formula is printed as
"FN * 200 * 1e-5" (a typo for FN * 200 * (1e-5/LR)), and its "hard = 15" example
contradicts its own "hard = (1e-5/LR) * 2" (which gives 20 at LR 1e-6).
"""
from __future__ import annotations

import math
from typing import Optional

from . import sources as src
from .inputs import STRENGTHS, PlanInputs
from .quantity import fmt, round_half_up
from .sheet import Sheet

TYPO_NOTE = " (the seed prints 'FN * 200 * 1e-5', a typo for FN * 200 * (1e-5/LR))"
STANDARD_FRAME_LIMIT = 5


def steps_per_frame(te: bool, res: int, base: int) -> float:
    """spf_base = (100 with TE, else 200) x (RES/RES_B)^2."""
    return (100 if te else 200) * (res / base) ** 2


def dreambooth_figures(s: Sheet, p: PlanInputs) -> None:
    s.section("dreambooth", src.SEED_002)
    fn: Optional[int] = s.value("frames")
    per = 100 if p.train_text_encoder else 200
    te = "with TE" if p.train_text_encoder else "without TE"
    rc = (p.resolution / p.base_resolution) ** 2
    s.put("resolution_factor", rc, "", f"RC = (RES / RES_B)^2 = ({p.resolution} / {p.base_resolution})^2 = {fmt(rc)}",
          "resolution factor")
    spf_base = per * rc
    s.put("spf_base", spf_base, "steps/frame", f"SPF_B = {per} ({te}) x RC = {per} x {fmt(rc)} = {fmt(spf_base)}",
          "steps per frame at LR 1e-5")

    if p.lr is None:
        s.missing("spf", "steps/frame", "lr", "steps per frame at your LR")
        s.missing("standard_steps", "updates", "lr and images", "standard formula steps")
        s.missing("frames_for_strength", "frames", "lr", "frames for each strength F")
        s.missing("implied_strength", "F", "lr and images", "strength F your LR implies")
    else:
        spf = spf_base * (1e-5 / p.lr)
        s.put("spf", spf, "steps/frame", f"SPF = SPF_B x (1e-5 / LR) = {fmt(spf_base)} x (1e-5 / {fmt(p.lr)})"
              f" = {fmt(spf)}", "steps per frame at your LR")
        k = 1e-5 / p.lr
        s.put("frames_for_strength", {name: f * k for name, f in STRENGTHS.items()}, "frames",
              f"frames = F x (1e-5 / LR) = F x {fmt(k)}; the seed's 'hard = 15' example contradicts its own formula"
              f" (hard = 2 x {fmt(k)} = {fmt(2 * k)})", "frames for each strength F")
        if fn is None:
            s.missing("standard_steps", "updates", "images", "standard formula steps")
            s.missing("implied_strength", "F", "images", "strength F your LR implies")
        else:
            st = round_half_up(fn * spf)
            s.put("standard_steps", st, "updates", f"FN x SPF = {fn} x {fmt(spf)} = {st}" + TYPO_NOTE,
                  "standard formula steps")
            f_impl = fn * p.lr / 1e-5
            name = next((n for n, v in STRENGTHS.items() if math.isclose(v, f_impl, rel_tol=0.02)), "")
            s.put("implied_strength", f_impl, "F", f"F = FN x LR / 1e-5 = {fn} x {fmt(p.lr)} / 1e-5 = {fmt(f_impl)}"
                  + (f" ({name})" if name else ""), "strength F your LR implies")
            if fn > STANDARD_FRAME_LIMIT and p.method == "dreambooth" and math.isclose(p.lr, 1e-5, rel_tol=0.01):
                s.warn("images", f"{fn} frames at LR 1e-5: the standard formula is meant for at most "
                       f"{STANDARD_FRAME_LIMIT} frames; more over-saturate the token (blurry results). Use the"
                       " advanced formula's LR (lr_for_frames) instead.")

    if fn is None:
        for id, unit, label in (("lr_for_frames", "LR", "LR for your frames at strength F"),
                                ("advanced_steps", "updates", "advanced formula steps"),
                                ("bs_ga_steps", "updates", "steps corrected for BS and GA"),
                                ("class_images", "images", "class (regularisation) images")):
            s.missing(id, unit, "images", label)
    else:
        lr_f = 1e-5 * p.strength / fn
        s.put("lr_for_frames", lr_f, "LR", f"LR = 1e-5 x F / FN = 1e-5 x {fmt(p.strength)} / {fn} = {fmt(lr_f)}",
              "LR for your frames at strength F")
        adv = round_half_up(fn * spf_base)
        s.put("advanced_steps", adv, "updates", f"FN x SPF_B = {fn} x {fmt(spf_base)} = {adv}",
              "advanced formula steps")
    if p.train_text_encoder:
        spf_a = spf_base
        s.put("spf_a", spf_a, "steps/frame", f"SPF_A = SPF_B = {fmt(spf_base)} (with TE)",
              "incremental steps per frame")
    else:
        spf_a = math.ceil(spf_base / 1.5)
        s.put("spf_a", spf_a, "steps/frame", f"SPF_A = ceil(SPF_B / 1.5) = ceil({fmt(spf_base)} / 1.5) = {spf_a}",
              "incremental steps per frame")
    ads = spf_a * (p.batch_size - 1)
    s.put("ads", ads, "updates", f"ADS = SPF_A x (BS - 1) = {fmt(spf_a)} x ({p.batch_size} - 1) = {fmt(ads)}",
          "incremental steps for the batch size")
    if fn is not None:
        raw = (fn * spf_base + ads) / math.sqrt(p.batch_size) * math.sqrt(p.grad_accum)
        bs_ga = round_half_up(raw)
        s.put("bs_ga_steps", bs_ga, "updates",
              f"(FN x SPF_B + ADS) / sqrt(BS) x sqrt(GA) = ({fn} x {fmt(spf_base)} + {fmt(ads)}) / sqrt({p.batch_size})"
              f" x sqrt({p.grad_accum}) = {bs_ga}", "steps corrected for BS and GA")
        ci = fn * per
        s.put("class_images", ci, "images", f"FN x {per} ({te}) = {fn} x {per} = {ci}",
              "class (regularisation) images")
    if p.grad_accum > 1 and p.method == "dreambooth":
        s.warn("grad_accum", "seed 002 recommends GA 1: accumulation only approximates a larger batch;"
               " its sqrt(GA) correction is an estimate")


def dynamic_resolution_figures(s: Sheet, p: PlanInputs) -> None:
    s.section("dreambooth", src.SEED_002)
    if not p.resolutions:
        s.missing("dynamic_resolution_copies", "copies/frame", "resolutions", "copies per frame at each resolution")
        s.missing("dynamic_resolution_steps", "updates", "resolutions and images", "dynamic-resolution steps")
        return
    per = 100 if p.train_text_encoder else 200
    copies = {str(r): max(1, round_half_up((r / p.base_resolution) ** 2)) for r in p.resolutions}
    s.put("dynamic_resolution_copies", copies, "copies/frame",
          "max(1, round((Ri / RES_B)^2)): " + ", ".join(f"{r}: {c}" for r, c in copies.items()),
          "copies per frame at each resolution")
    fn = s.value("frames")
    if fn is None:
        s.missing("dynamic_resolution_steps", "updates", "images", "dynamic-resolution steps")
        return
    per_res = [fn * per * (r / p.base_resolution) ** 2 for r in p.resolutions]
    steps = round_half_up(sum(per_res) / len(per_res))
    s.put("dynamic_resolution_steps", steps, "updates",
          f"mean of FN x SPF_B(Ri) = ({' + '.join(fmt(x) for x in per_res)}) / {len(per_res)} = {steps}",
          "dynamic-resolution steps")
