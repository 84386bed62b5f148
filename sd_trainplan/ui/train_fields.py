"""The trainer panel's fields: one widget per TrainConfig setting the page shows, with its stable id.

Pure Python (no gradio, no torch). `read_fields` turns the widgets' values into a TrainConfig
and a message per field (a value that does not parse, or a `check_config` problem naming the
field); `field_values` turns a TrainConfig back into widget values (what "Apply to trainer"
sends). Settings the page does not show (LR floor of a cyclical schedule, weight decay, ...)
travel in a hidden dict beside the fields: Apply fills it from the plan.
"""
from __future__ import annotations

from dataclasses import dataclass, fields as dc_fields
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..plan import SCHEDULERS
from ..plan.quantity import fmt
from ..train.config import METHODS, SAVE_PRECISIONS, TrainConfig, check_config
from .fields import Widget

ANY = ()  # shown for every method


@dataclass(frozen=True)
class TrainWidget(Widget):
    """A planner-page widget that sets a TrainConfig field (`key`), shown for some methods only."""
    methods: Tuple[str, ...] = ANY   # shown only for these methods
    info: str = ""                   # help shown under the label


SECTIONS = {
    "what": "Model, data and output",
    "prompts": "Prompts and what trains",
    "length": "Length, batch and learning rate",
    "checks": "Validation and checkpoints",
    "samples": "Sample images while training",
}

DB, TI, LORA = ("dreambooth",), ("ti",), ("lora",)

TRAIN_WIDGETS: Tuple[Tuple[TrainWidget, ...], ...] = (
    (TrainWidget("method", "stp_train_method", "Method", "radio", "what", METHODS),
     TrainWidget("model", "stp_train_model", "Model", "text", "what",
                 placeholder="tiny, a diffusers folder or a .safetensors file", width=2)),
    (TrainWidget("data", "stp_train_data", "Dataset folder", "text", "what",
                 placeholder="/path/to/images (same-name .txt files are captions)", width=2),
     TrainWidget("repeats", "stp_train_repeats", "Repeats", "text", "what", placeholder="1")),
    (TrainWidget("name", "stp_train_name", "Output name", "text", "what", placeholder="run"),
     TrainWidget("output", "stp_train_output", "Output folder", "text", "what", placeholder="runs", width=2)),
    (TrainWidget("save_precision", "stp_train_save_precision", "Checkpoint precision", "radio", "what",
                 SAVE_PRECISIONS, methods=DB,
                 info="keep: every tensor as the model has it (an fp32 model gives an fp32 checkpoint, twice the"
                      " size). fp16: half the size, but every weight is rounded to fp16, the parts that did not"
                      " train too."),),
    (TrainWidget("instance_prompt", "stp_train_instance_prompt", "Instance prompt", "text", "prompts",
                 placeholder="a photo of [name]  ([name] = token, [filewords] = caption)", width=2),
     TrainWidget("token", "stp_train_token", "Token [name]", "text", "prompts",
                 placeholder="a rare word, e.g. sks")),
    (TrainWidget("class_prompt", "stp_train_class_prompt", "Class prompt (prior preservation)", "text", "prompts",
                 placeholder="a photo of a person", width=2, methods=DB),
     TrainWidget("num_class_images", "stp_train_class_images", "Class images", "text", "prompts",
                 placeholder="0: off", methods=DB)),
    (TrainWidget("init_word", "stp_train_init_word", "Initialisation word", "text", "prompts",
                 placeholder="person", methods=TI),
     TrainWidget("vectors", "stp_train_vectors", "Vectors per token", "text", "prompts", placeholder="1", methods=TI),
     TrainWidget("rank", "stp_train_rank", "LoRA rank", "text", "prompts", placeholder="4", methods=LORA),
     TrainWidget("alpha", "stp_train_alpha", "LoRA alpha", "text", "prompts", placeholder="4", methods=LORA)),
    (TrainWidget("train_text_encoder", "stp_train_te", "Train the text encoder", "checkbox", "prompts",
                 methods=DB + LORA),
     TrainWidget("text_encoder_lr", "stp_train_te_lr", "Text encoder LR", "text", "prompts",
                 placeholder="same as LR", methods=DB + LORA)),
    (TrainWidget("steps", "stp_train_steps", "Weight updates", "text", "length", placeholder="100"),
     TrainWidget("batch_size", "stp_train_batch_size", "Batch size", "text", "length", placeholder="1"),
     TrainWidget("grad_accum", "stp_train_grad_accum", "Grad. accum.", "text", "length", placeholder="1"),
     TrainWidget("resolution", "stp_train_resolution", "Resolution", "text", "length",
                 placeholder="512 (SDXL: 1024)")),
    (TrainWidget("lr", "stp_train_lr", "Learning rate", "text", "length", placeholder="1e-5"),
     TrainWidget("scheduler", "stp_train_scheduler", "Scheduler", "dropdown", "length", tuple(SCHEDULERS),
                 custom=True, width=2),
     TrainWidget("warmup", "stp_train_warmup", "Warm-up updates", "text", "length", placeholder="0")),
    (TrainWidget("gradient_checkpointing", "stp_train_low_vram", "Low VRAM (gradient checkpointing)", "checkbox",
                 "length", info="recomputes the UNet's blocks in the backward pass and keeps the text encoders and"
                 " VAE off the GPU while the UNet trains: SDXL LoRA at batch 1 and 1024 px in 11.7 GiB instead of"
                 " 24.7, a third slower"),),
    (TrainWidget("val_split", "stp_train_val_split", "Validation split", "text", "checks", placeholder="0"),
     TrainWidget("val_every", "stp_train_val_every", "Validate every", "text", "checks", placeholder="0: at the end"),
     TrainWidget("save_every", "stp_train_save_every", "Save every", "text", "checks", placeholder="0: at the end"),
     TrainWidget("keep_last", "stp_train_keep_last", "Keep last", "text", "checks", placeholder="2")),
    (TrainWidget("sample_prompt", "stp_train_sample_prompt", "Sample prompt", "text", "samples",
                 placeholder="the instance prompt", width=3),
     TrainWidget("sample_every", "stp_train_sample_every", "Every N updates", "text", "samples", placeholder="0: off")),
    (TrainWidget("sample_seed", "stp_train_sample_seed", "Sample seed", "text", "samples", placeholder="0"),
     TrainWidget("sample_cfg", "stp_train_sample_cfg", "Sample CFG scale", "text", "samples", placeholder="7"),
     TrainWidget("sample_steps", "stp_train_sample_steps", "Sampling steps", "text", "samples", placeholder="20")),
)

ALL_TRAIN: Tuple[TrainWidget, ...] = tuple(w for row in TRAIN_WIDGETS for w in row)
TRAIN_KEYS: Tuple[str, ...] = tuple(w.key for w in ALL_TRAIN)
TRAIN_BY_KEY: Dict[str, TrainWidget] = {w.key: w for w in ALL_TRAIN}
DEFAULTS: Dict[str, Any] = {f.name: f.default for f in dc_fields(TrainConfig)}
# Settings the page does not show but a plan may set (kept in the hidden dict beside the fields).
HIDDEN = ("lr_min", "cycle_steps", "weight_decay")
# The plan's settings: Apply overwrites exactly these fields (the rest stay as the user typed them).
# Where 0 means "off" or "same as": the field shows empty, its placeholder says what that means.
ZERO_IS_EMPTY = ("val_every", "save_every", "sample_every", "num_class_images", "text_encoder_lr")
# Fields an empty value leaves empty (check_config then says what to type), never a silent default:
# an emptied Token field would otherwise train the default word.
NO_DEFAULT = ("token",)
FROM_PLAN = ("method", "batch_size", "grad_accum", "resolution", "repeats", "val_split", "val_every",
             "train_text_encoder", "text_encoder_lr", "scheduler", "warmup", "lr", "steps", "num_class_images")


def shown_for(w: TrainWidget, method: str) -> bool:
    return not w.methods or method in w.methods


def widget_value(w: TrainWidget, v: Any) -> Any:
    """A TrainConfig value as its widget holds it; 0 shows as empty where the placeholder says what 0 means."""
    if w.kind == "checkbox":
        return bool(v)
    if w.kind in ("radio", "dropdown"):
        return str(v)
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int, float)):
        if v == 0 and w.key in ZERO_IS_EMPTY:
            return ""
        return fmt(float(v)) if isinstance(v, float) else str(v)
    return "" if v is None else str(v)


def field_values(cfg: TrainConfig) -> Dict[str, Any]:
    return {w.key: widget_value(w, getattr(cfg, w.key)) for w in ALL_TRAIN}


def hidden_values(cfg: TrainConfig) -> Dict[str, Any]:
    return {k: getattr(cfg, k) for k in HIDDEN}


def _parse(w: TrainWidget, v: Any, base: TrainConfig) -> Tuple[Any, str]:
    """(value, problem). An empty text field means the base config's value (the default)."""
    default = getattr(base, w.key)
    if w.kind == "checkbox":
        return bool(v), ""
    text = "" if v is None else str(v).strip()
    if text == "":
        return ("" if w.key in NO_DEFAULT else default), ""
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes", "on"), ""
    if isinstance(default, int):
        try:
            f = float(text)
        except ValueError:
            return None, f"must be a whole number (got {text!r})"
        if not f.is_integer():
            return None, f"must be a whole number (got {text!r})"
        return int(f), ""
    if isinstance(default, float):
        try:
            return float(text), ""
        except ValueError:
            return None, f"must be a number, e.g. 1e-5 (got {text!r})"
    return text, ""


@dataclass(frozen=True)
class FieldCheck:
    cfg: Optional[TrainConfig]          # None when a value does not parse
    messages: Dict[str, str]            # widget key -> problem shown beside the field
    other: Tuple[str, ...]              # problems about settings without a widget, as "setting: message"

    @property
    def ok(self) -> bool:
        return self.cfg is not None and not self.messages and not self.other

    def count(self) -> int:
        return len(self.messages) + len(self.other)


def read_fields(values: Mapping[str, Any], hidden: Optional[Mapping[str, Any]] = None,
                base: TrainConfig = TrainConfig(), lenient: bool = False) -> FieldCheck:
    """Parse the widgets (over `base` and the hidden settings) and run check_config on the result.
    lenient: a value that does not parse keeps the base's (for Apply, which overwrites fields)."""
    parsed: Dict[str, Any] = {k: v for k, v in (hidden or {}).items() if k in DEFAULTS}
    bad: Dict[str, str] = {}
    for w in ALL_TRAIN:
        v, problem = _parse(w, values.get(w.key), base)
        if problem:
            bad[w.key] = problem
        else:
            parsed[w.key] = v
    cfg = base.replace(**parsed)
    if lenient:
        return FieldCheck(cfg, {}, ())
    check = split_problems(check_config(cfg))
    return merge(FieldCheck(None, bad, ()), check, None if bad else cfg)


def split_problems(problems: Sequence[str]) -> FieldCheck:
    """'batch_size: ...' lines -> the message beside Batch size; lines about settings the page
    does not show (or with no field name) are kept whole for the status line."""
    messages: Dict[str, List[str]] = {}
    other: List[str] = []
    for line in problems:
        head, sep, rest = line.partition(": ")
        if sep and head in TRAIN_BY_KEY:
            messages.setdefault(head, []).append(rest)
        elif sep and head.startswith("concepts"):
            messages.setdefault("data", []).append(line)
        else:
            other.append(line)
    return FieldCheck(None, {k: _shorten(v) for k, v in messages.items()}, tuple(other))


def _shorten(texts: List[str], keep: int = 2) -> str:
    """A field's problems in one message; a long list (every image of a folder) ends with a count."""
    more = len(texts) - keep
    return "; ".join(texts[:keep]) + (f"; and {more} more like {'it' if more == 1 else 'these'}" if more > 0 else "")


def merge(a: FieldCheck, b: FieldCheck, cfg: Optional[TrainConfig]) -> FieldCheck:
    messages = dict(b.messages)
    messages.update(a.messages)
    return FieldCheck(cfg, messages, tuple(dict.fromkeys(a.other + b.other)))
