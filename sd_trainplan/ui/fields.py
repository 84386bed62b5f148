"""The planner panel's inputs: one widget per planner field, with its stable element id.

Pure Python (no gradio): the panel builder turns these into components, and the
handlers turn the components' values back into the planner's raw inputs. Every
planner field in `plan.FIELDS` has exactly one widget here (a test checks it).
"""
from __future__ import annotations

from dataclasses import dataclass, fields as dc_fields
from typing import Any, Dict, Mapping, Optional, Tuple

from ..plan import FIELDS, METHODS, SCHEDULERS, STRENGTHS, PlanInputs
from ..plan.quantity import fmt

DATASET = "dataset"  # the folder whose images are counted; not a planner field


@dataclass(frozen=True)
class Widget:
    key: str                 # the planner field it fills (or DATASET)
    elem_id: str             # stable id for scripts and tests
    label: str
    kind: str                # text | dropdown | radio | checkbox
    section: str
    choices: Tuple[str, ...] = ()
    custom: bool = False     # a dropdown that also takes a typed value
    placeholder: str = ""
    width: int = 1           # relative width inside its row

    @property
    def msg_id(self) -> str:
        """The element beside the widget that shows its errors and warnings."""
        return self.elem_id + "_msg"


SECTIONS = {
    "data": "Data",
    "batch": "Batch",
    "length": "Length",
    "lr": "Learning rate",
    "model": "Model and precision",
    "more": "Dynamic resolution and LR range test",
}

# Rows of the form, top to bottom; each tuple is one row of widgets.
WIDGETS: Tuple[Tuple[Widget, ...], ...] = (
    (Widget("method", "stp_method", "Method", "radio", "data", METHODS),),
    (Widget(DATASET, "stp_dataset", "Dataset folder", "text", "data",
            placeholder="/path/to/images (optional: its images are counted)"),),
    (Widget("images", "stp_images", "Images N", "text", "data", placeholder="e.g. 20"),
     Widget("repeats", "stp_repeats", "Repeats r", "text", "data", placeholder="1"),
     Widget("val_split", "stp_val_split", "Validation split p", "text", "data", placeholder="0")),
    (Widget("batch_size", "stp_batch_size", "Batch size BS", "text", "batch", placeholder="1"),
     Widget("grad_accum", "stp_grad_accum", "Grad. accumulation GA", "text", "batch", placeholder="1"),
     Widget("gpus", "stp_gpus", "GPUs P", "text", "batch", placeholder="1")),
    (Widget("steps", "stp_steps", "Steps", "text", "length", placeholder="auto"),
     Widget("epochs", "stp_epochs", "or Epochs", "text", "length", placeholder="auto"),
     Widget("step_unit", "stp_step_unit", "A step is", "radio", "length", ("update", "batch"))),
    (Widget("lr", "stp_lr", "Learning rate LR", "text", "lr", placeholder="auto"),
     Widget("lr_scaling", "stp_lr_scaling", "LR scaling", "dropdown", "lr", ("none", "linear", "sqrt")),
     Widget("strength", "stp_strength", "Strength F", "dropdown", "lr", tuple(STRENGTHS), custom=True)),
    (Widget("scheduler", "stp_scheduler", "Scheduler", "dropdown", "lr", tuple(SCHEDULERS), custom=True,
            width=2),
     Widget("warmup", "stp_warmup", "Warm-up updates", "text", "lr", placeholder="0")),
    (Widget("resolution", "stp_resolution", "Resolution RES", "text", "model", placeholder="512"),
     Widget("base_resolution", "stp_base_resolution", "Model base RES_B", "dropdown", "model",
            ("512", "768", "1024"), custom=True),
     Widget("train_text_encoder", "stp_te", "Train text encoder (TE)", "checkbox", "model")),
    (Widget("weights", "stp_weights", "Weight storage", "dropdown", "model", ("mixed", "bf16", "fp16", "fp32")),
     Widget("weight_scale", "stp_weight_scale", "Typical |w|", "text", "model",
            placeholder="0.03 (TI: 0.015)")),
    (Widget("resolutions", "stp_resolutions", "Dynamic resolutions", "text", "more", placeholder="e.g. 512,768"),
     Widget("sweep_epochs", "stp_sweep_epochs", "Range test epochs", "text", "more", placeholder="e.g. 100"),
     Widget("sweep_max_lr", "stp_sweep_max_lr", "Range test max LR", "text", "more", placeholder="e.g. 1.5e-6")),
    (Widget("bounds_steps", "stp_bounds_steps", "Bounds at steps LO,HI", "text", "more", placeholder="e.g. 50,300"),
     Widget("lr_bounds", "stp_lr_bounds", "Measured LR bounds LO,HI", "text", "more",
            placeholder="e.g. 2e-7,1.1e-6"),
     Widget("noise_scale", "stp_noise_scale", "Measured noise scale B_simple", "text", "more",
            placeholder="from metrics.jsonl"),
     Widget("vram_gb", "stp_vram_gb", "GPU memory (GB)", "text", "model", placeholder="e.g. 12")),
)

ALL: Tuple[Widget, ...] = tuple(w for row in WIDGETS for w in row)
BY_KEY: Dict[str, Widget] = {w.key: w for w in ALL}


def widget_value(w: Widget, v: Any) -> Any:
    """A planner value as the widget holds it: text fields hold strings, '' when not given."""
    if w.kind == "checkbox":
        return bool(v)
    if v is None:
        return "" if w.kind == "text" else None
    if isinstance(v, (list, tuple)):
        return ",".join(fmt(x) for x in v)
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        return fmt(v) if w.key != "strength" else next((k for k, x in STRENGTHS.items() if x == v), fmt(v))
    return str(v)


def default_values() -> Dict[str, Any]:
    """Every widget's value for the planner's defaults (PlanInputs), dataset empty."""
    defaults = {f.name: f.default for f in dc_fields(PlanInputs)}
    defaults["strength"] = defaults.pop("strength_name") or defaults["strength"]
    out = {w.key: widget_value(w, defaults.get(w.key)) for w in ALL if w.key != DATASET}
    out[DATASET] = ""
    return out


def preset_values(inputs: Mapping[str, Any], keep: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Widget values for a preset: its inputs over the defaults (a preset defines the whole plan)."""
    out = default_values()
    for key, v in inputs.items():
        if key in BY_KEY:
            out[key] = widget_value(BY_KEY[key], v)
    for key, v in (keep or {}).items():
        out[key] = v
    return out


def raw_inputs(values: Mapping[str, Any]) -> Dict[str, Any]:
    """The planner's raw inputs from widget values (the dataset folder is not one)."""
    raw: Dict[str, Any] = {}
    for key, v in values.items():
        if key == DATASET or key not in FIELDS:
            continue
        if isinstance(v, str):
            v = v.strip()
        if v is None or v == "":
            continue
        raw[key] = v
    return raw
