"""`plan_to_train_config`: the plan's figures as trainer settings ("Apply to trainer").

Pure Python (no torch): the UI calls it on every Apply, and the user can still edit each
field afterwards.
"""
from __future__ import annotations

from typing import Any

from ..plan.planner import PlanResult
from .config import TrainConfig

LORA_TE_LR = 5e-5  # seed 001: text-encoder LR beside UNet 1e-4


def plan_to_train_config(plan: PlanResult, base: TrainConfig = TrainConfig(), **overrides: Any) -> TrainConfig:
    """Fill method, LR(s), schedule, BS, GA, updates, warm-up, resolution, class images and
    validation settings from a computed plan; keep everything else from `base`."""
    if plan.errors or plan.inputs is None:
        raise ValueError("the plan has errors: " + "; ".join(f"{e.field}: {e.message}" for e in plan.errors))
    p = plan.inputs
    values = dict(method=p.method, batch_size=p.batch_size, grad_accum=p.grad_accum, resolution=p.resolution,
                  repeats=p.repeats, val_split=p.val_split, train_text_encoder=p.train_text_encoder,
                  scheduler=p.scheduler, warmup=p.warmup)
    lr, updates = plan.value("planned_lr"), plan.value("planned_updates")
    if lr is not None:
        values["lr"] = lr
    if updates is not None:
        values["steps"] = updates
        values["warmup"] = min(p.warmup, updates)
    sched = plan.schedule
    if sched is not None and sched.name == "cyclical":
        values["lr_min"] = sched.base_lr
        values["cycle_steps"] = sched.step_size
    if p.method == "lora" and p.train_text_encoder and lr is not None:
        values["text_encoder_lr"] = lr * LORA_TE_LR / 1e-4
    if p.method == "ti":
        values["weight_decay"] = 0.0
    if p.method == "dreambooth" and base.class_prompt and plan.value("class_images"):
        values["num_class_images"] = plan.value("class_images")
    if p.val_split > 0 and updates:
        values["val_every"] = max(1, updates // 20)  # about 20 points on the validation curve
    values.update(overrides)
    return base.replace(**values)
