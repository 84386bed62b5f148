"""Run arithmetic: images, batches, weight updates, epochs (seeds 000, 001, 003, 004).

The counting rules (DESIGN.md §3): "frames" are the distinct training images without
repeats; recommended step counts are weight updates; counts round half up.
"""
from __future__ import annotations

from typing import Optional, Tuple

from . import sources as src
from .inputs import PlanInputs, val_images
from .quantity import fmt, round_half_up
from .sheet import Sheet


def dataset_figures(s: Sheet, p: PlanInputs) -> None:
    s.section("run", src.SEED_004)
    if p.images is None:
        for id, unit, label in (("val_images", "images", "held-out images"),
                                ("train_images", "images", "training images per epoch"),
                                ("frames", "images", "frames (distinct training images)")):
            s.missing(id, unit, "images", label)
    else:
        v = val_images(p.images, p.val_split)
        s.put("val_images", v, "images", f"ceil(N x p) = ceil({p.images} x {fmt(p.val_split)}) = {v}",
              "held-out images")
        t = (p.images - v) * p.repeats
        s.put("train_images", t, "images", f"(N - val_images) x r = ({p.images} - {v}) x {p.repeats} = {t}",
              "training images per epoch")
        fn = p.images - v
        s.put("frames", fn, "images", f"FN = N - val_images = {p.images} - {v} = {fn} (repeats not counted)",
              "frames (distinct training images)", src.SEED_002)
    s.section("run", src.SEED_001)
    eb = p.batch_size * p.grad_accum * p.gpus
    s.put("effective_batch", eb, "images/update",
          f"BS x GA x P = {p.batch_size} x {p.grad_accum} x {p.gpus} = {eb}", "effective batch")


def user_updates(p: PlanInputs, train_images: Optional[int]) -> Tuple[Optional[int], Optional[int], str]:
    """(weight_updates, batches, formula) from the user's steps or epochs, or Nones if neither was given."""
    ga = p.grad_accum
    if p.steps is not None:
        if p.step_unit == "update":
            return p.steps, p.steps * ga, f"steps = {p.steps} (step unit: weight update)"
        u = p.steps // ga
        return u, p.steps, f"floor(steps / GA) = floor({p.steps} / {ga}) = {u} (step unit: batch)"
    if p.epochs is not None and train_images:
        eb = p.batch_size * ga * p.gpus
        u = max(1, round_half_up(p.epochs * train_images / eb))
        return u, u * ga, (f"round(epochs x train_images / (BS x GA x P)) = round({fmt(p.epochs)} x {train_images}"
                           f" / {eb}) = {u}")
    return None, None, ""


def run_figures(s: Sheet, p: PlanInputs, updates: Optional[int], batches: Optional[int], how: str) -> None:
    """batches, weight_updates, images_seen, epochs and full_cycle for the run as planned."""
    s.section("run", src.SEED_000)
    train = s.value("train_images")
    if updates is None:
        need = "steps or epochs (or a method recommendation)" if p.epochs is None else "images"
        for id, unit, label in (("batches", "batches", "batches (micro-batches) per process"),
                                ("weight_updates", "updates", "weight updates"),
                                ("images_seen", "images", "images seen"), ("epochs", "epochs", "epochs")):
            s.missing(id, unit, need, label)
    else:
        s.put("weight_updates", updates, "updates", how, "weight updates")
        if p.steps is not None and p.step_unit == "batch":
            s.put("batches", batches, "batches", f"steps = {batches} (step unit: batch)", "batches per process")
        else:
            s.put("batches", batches, "batches", f"weight_updates x GA = {updates} x {p.grad_accum} = {batches}",
                  "batches per process")
        seen = batches * p.batch_size * p.gpus
        s.put("images_seen", seen, "images",
              f"batches x BS x P = {batches} x {p.batch_size} x {p.gpus} = {seen}", "images seen")
        if train:
            e = seen / train
            s.put("epochs", e, "epochs", f"images_seen / train_images = {seen} / {train} = {fmt(e)}"
                  f" (seed 000 rounds down: {int(e)})", "epochs")
        else:
            s.missing("epochs", "epochs", "images", "epochs")
    eb = s.value("effective_batch")
    if train is None:
        s.missing("full_cycle", "", "images", "full-cycle training")
    else:
        fc = train == eb
        s.put("full_cycle", fc, "", f"train_images == BS x GA x P: {train} {'==' if fc else '!='} {eb}"
              " (one weight update per epoch)", "full-cycle training")
        per_step = p.batch_size * p.gpus
        if train % per_step:
            s.warn("batch_size", f"{train} training images do not split evenly into batches of BS x P = {per_step}:"
                   f" the last batch of each epoch has {train % per_step} (seed 002: uneven training)")


def critical_batch_figure(s: Sheet, p: PlanInputs) -> None:
    s.section("run", "McCandlish et al. 2018, An Empirical Model of Large-Batch Training (B_simple)")
    if p.noise_scale is None:
        s.missing("critical_batch", "images", "noise_scale (measured by a run with GA > 1)", "critical batch size")
        return
    eb = s.value("effective_batch")
    verdict = ("below it: a larger batch would still speed training up almost in proportion" if eb < p.noise_scale
               else "above it: a larger batch buys little; a smaller one wastes less compute")
    s.put("critical_batch", p.noise_scale, "images", f"critical batch ~ B_simple = tr(Sigma)/|G|^2 = {fmt(p.noise_scale)};"
          f" your effective batch {eb} is {verdict}", "critical batch size")
