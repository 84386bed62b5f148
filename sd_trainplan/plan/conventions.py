"""What to type where: the current plan in each popular trainer's own units.

Each trainer counts "a step" differently. Checked in their sources:
- AUTOMATIC1111 v1.10.1 Train tab: "Max steps" counts optimizer updates (embedding.step += 1 after
  each accumulated update). It clamps BS to the image count and GA to images // BS, and each epoch
  uses only len//BS - (len//BS) % GA batches (a drop-last for accumulation). It has no held-out split,
  and its "repeats" option only changes the epoch shown.
- diffusers examples: --max_train_steps counts updates; --scale_lr multiplies LR by BS x GA x P.
- kohya sd-scripts: --max_train_steps counts updates; repeats live in the folder name; regularisation
  images double an epoch.
- EveryDream2: set in epochs (max_epochs); its step counter counts micro-batches.
- OneTrainer and the Dreambooth extension: set in epochs.
"""
from __future__ import annotations

from typing import Optional

from . import schedule as sched
from . import sources as src
from .inputs import PlanInputs
from .quantity import fmt, round_half_up
from .sheet import Sheet


def a1111_schedule_text(sc: sched.Schedule, pieces: int = 8) -> str:
    """The schedule as the WebUI's "rate:until, ..." text (piecewise-constant; exact for constant/a1111)."""
    if sc.name == "a1111":
        return ", ".join(f"{fmt(r)}:{u}" for r, u in sc.pieces)
    if sc.name == "constant" or sc.total <= 1:
        return fmt(sc.peak_lr)
    n = min(pieces, sc.total)
    parts = []
    for i in range(n):
        a, b = i * sc.total // n, (i + 1) * sc.total // n
        mean = sum(sched.lr_at(sc, t) for t in range(a, b)) / max(1, b - a) if b - a <= 64 else \
            sum(sched.lr_at(sc, a + (j + 0.5) * (b - a) / 64) for j in range(64)) / 64
        rate = float(f"{max(mean, 1e-12):.3g}")
        if parts and parts[-1][0] == rate:
            parts[-1] = (rate, b)
        else:
            parts.append((rate, b))
    return ", ".join(f"{fmt(r)}:{u}" for r, u in parts)


def convention_figures(s: Sheet, p: PlanInputs, updates: Optional[int], lr: Optional[float],
                       sc: Optional[sched.Schedule]) -> None:
    epochs = s.value("epochs")
    eb = s.value("effective_batch")
    s.section("conventions", src.A1111_TI)
    if updates is None:
        s.missing("a1111_max_steps", "updates", "planned_updates", "WebUI Train tab: Max steps")
    elif p.images is None:
        s.missing("a1111_max_steps", "updates", "images", "WebUI Train tab: Max steps")
    else:
        n = p.images  # the WebUI trains on every image in the folder: no split, repeats only relabel epochs
        bs = min(p.batch_size, n)
        ga = min(p.grad_accum, n // bs)
        per_epoch = (n // bs - (n // bs) % ga) // ga
        s.put("a1111_max_steps", updates, "updates",
              f"Max steps = weight updates = {updates}; the WebUI uses BS {bs}, GA {ga} (GA <= N // BS = {n // bs}),"
              f" {per_epoch} update(s) per epoch -> {fmt(updates / per_epoch)} epochs over all {n} images"
              " (it has no validation split). Seed 000 counted batches; v1.10.1 counts updates."
              + ("" if p.method == "ti" else " The built-in tab trains embeddings only."),
              "WebUI Train tab: Max steps")
        if ga != p.grad_accum or bs != p.batch_size:
            s.warn("grad_accum", f"the WebUI's Train tab silently lowers BS x GA to {bs} x {ga} for {n} images"
                   f" (GA <= images // BS); type GA {ga} there to get what you planned")
    if lr is not None and sc is not None:
        s.put("a1111_learning_rate", a1111_schedule_text(sc), "LR",
              "the plan's LR, or its schedule as the WebUI's 'rate:until_step' pieces (piecewise-constant"
              " approximation of decaying schedules)", "WebUI Train tab: Embedding learning rate")
    else:
        s.missing("a1111_learning_rate", "LR", "lr", "WebUI Train tab: Embedding learning rate")

    s.section("conventions", src.DIFFUSERS)
    if updates is None:
        s.missing("diffusers_max_train_steps", "updates", "planned_updates", "diffusers: --max_train_steps")
    else:
        s.put("diffusers_max_train_steps", updates, "updates", f"--max_train_steps = weight updates = {updates}"
              f" (with --train_batch_size {p.batch_size} --gradient_accumulation_steps {p.grad_accum})",
              "diffusers: --max_train_steps")
    if lr is None:
        s.missing("diffusers_learning_rate", "LR", "lr", "diffusers: --learning_rate")
    else:
        s.put("diffusers_learning_rate", lr, "LR", f"--learning_rate {fmt(lr)} without --scale_lr; with --scale_lr"
              f" type LR / (BS x GA x P) = {fmt(lr)} / {eb} = {fmt(lr / eb)}", "diffusers: --learning_rate")

    s.section("conventions", src.KOHYA)
    if updates is None:
        s.missing("kohya_max_train_steps", "updates", "planned_updates", "kohya: --max_train_steps")
    else:
        reg = " Regularisation (class) images double an epoch." if p.method == "dreambooth" else ""
        s.put("kohya_max_train_steps", updates, "updates", f"--max_train_steps = weight updates = {updates}"
              f" (--train_batch_size {p.batch_size}, --gradient_accumulation_steps {p.grad_accum}).{reg}",
              "kohya: --max_train_steps")
    s.put("kohya_folder", f"{p.repeats}_token class", "", f"image folder named '<repeats>_<token> <class>' ="
          f" '{p.repeats}_token class' (repeats r = {p.repeats})", "kohya: image folder name")

    for id, label, source, extra in (
            ("everydream2_max_epochs", "EveryDream2: max_epochs", src.ED2, " Its log's step counts micro-batches."),
            ("onetrainer_epochs", "OneTrainer: epochs", src.ONETRAINER, ""),
            ("dreambooth_ext_epochs", "Dreambooth extension: Training Steps Per Image (Epochs)", src.DB_EXT, "")):
        s.section("conventions", source)
        if epochs is None:
            s.missing(id, "epochs", "planned_updates and images", label)
        else:
            e = max(1, round_half_up(epochs))
            s.put(id, e, "epochs", f"epochs = {fmt(epochs)}, rounded = {e}.{extra}", label)
