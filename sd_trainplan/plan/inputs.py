"""The planner's inputs: one declaration per field, validated into a frozen `PlanInputs`.

The same field table drives the CLI flags, the UI inputs and the error messages, so a
bad value always gets a message that names the field (and its flag) and says what is
allowed, never a traceback.
"""
from __future__ import annotations

import math
from fractions import Fraction
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import schedule as sched

METHODS = ("dreambooth", "ti", "lora")
STEP_UNITS = ("update", "batch")
WEIGHTS = ("mixed", "bf16", "fp16", "fp32")
LR_SCALINGS = ("none", "linear", "sqrt")
# Seed 002, "List of F" (the strength coefficient of the advanced Dreambooth formula).
STRENGTHS = {"low_end": 0.20, "ultra_soft": 0.25, "very_soft": 0.33, "soft": 0.50, "medium": 1.00,
             "hard": 2.00, "very_hard": 3.00, "ultra_hard": 4.00, "high_end": 5.00}
DEFAULT_WEIGHT_SCALE = {"ti": 0.015}  # text-encoder token vectors; UNet and LoRA weights: 0.03
SCHEDULERS = sched.NAMES


@dataclass(frozen=True)
class PlanInputs:
    method: str = "dreambooth"
    images: Optional[int] = None
    repeats: int = 1
    val_split: float = 0.0
    batch_size: int = 1
    grad_accum: int = 1
    gpus: int = 1
    lr: Optional[float] = None
    lr_scaling: str = "none"             # none | linear (diffusers --scale_lr) | sqrt (OneTrainer)
    resolution: int = 512
    base_resolution: int = 512
    train_text_encoder: bool = False
    strength: float = 1.0
    strength_name: Optional[str] = "medium"
    scheduler: str = "constant"          # a name from SCHEDULERS, or an A1111 "rate:step, ..." string
    warmup: int = 0
    steps: Optional[int] = None
    epochs: Optional[float] = None
    step_unit: str = "update"
    resolutions: Tuple[int, ...] = ()
    sweep_epochs: Optional[float] = None
    sweep_max_lr: Optional[float] = None
    bounds_steps: Optional[Tuple[int, int]] = None
    lr_bounds: Optional[Tuple[float, float]] = None
    weights: str = "mixed"
    weight_scale: Optional[float] = None   # None: 0.03 (UNet, LoRA) or 0.015 (TI vectors)
    noise_scale: Optional[float] = None    # measured B_simple from a run with accumulation
    vram_gb: Optional[float] = None        # the GPU's memory, for "does it fit"

    def to_json(self) -> dict:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        return out


@dataclass(frozen=True)
class InputError:
    field: str
    message: str

    def text(self, flag: bool = False) -> str:
        name = FIELDS[self.field].flag if flag and self.field in FIELDS else self.field
        return f"{name}: {self.message}"


@dataclass(frozen=True)
class Field:
    name: str
    kind: str          # int | float | bool | choice | str | ints | floats | pair_int | pair_float | strength
    help: str
    minimum: Optional[float] = None   # inclusive lower bound for int/float
    above: Optional[float] = None     # exclusive lower bound
    below: Optional[float] = None     # exclusive upper bound
    maximum: Optional[float] = None   # inclusive upper bound: keeps every figure finite
    choices: Tuple[str, ...] = ()

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


FIELDS: Dict[str, Field] = {f.name: f for f in [
    Field("method", "choice", "what is trained", choices=METHODS),
    Field("images", "int", "number of images in the dataset (N)", minimum=1, maximum=10**7),
    Field("repeats", "int", "repeats of each image per epoch (r)", minimum=1, maximum=10**4),
    Field("val_split", "float", "fraction of images held out for validation (p)", minimum=0, below=1),
    Field("batch_size", "int", "images per batch on each GPU (BS)", minimum=1, maximum=4096),
    Field("grad_accum", "int", "batches accumulated per weight update (GA)", minimum=1, maximum=4096),
    Field("gpus", "int", "data-parallel processes (P)", minimum=1, maximum=4096),
    Field("lr", "float", "learning rate (LR)", minimum=1e-12, maximum=10),
    Field("lr_scaling", "choice", "scale the LR with the effective batch: none, linear (--scale_lr), sqrt",
          choices=LR_SCALINGS),
    Field("resolution", "int", "training resolution in px (RES), a multiple of 8", minimum=64,
          maximum=16384),
    Field("base_resolution", "int", "the model's base resolution (RES_B): 512 SD1/2-base, 768 SD2-v, 1024 SDXL",
          minimum=64, maximum=16384),
    Field("train_text_encoder", "bool", "train the text encoder too (TE)"),
    Field("strength", "strength", "strength F: a name (" + ", ".join(STRENGTHS) + ") or a number > 0"),
    Field("scheduler", "scheduler", "LR schedule: " + ", ".join(SCHEDULERS) + ", or the WebUI's 'rate:step, ...'"),
    Field("warmup", "int", "warm-up weight updates", minimum=0, maximum=10**9),
    Field("steps", "int", "training length in steps (see step_unit)", minimum=1, maximum=10**9),
    Field("epochs", "float", "training length in epochs", above=0, maximum=10**7),
    Field("step_unit", "choice", "what one of your steps is: a weight update or a batch", choices=STEP_UNITS),
    Field("resolutions", "ints", "resolutions for dynamic-resolution training, e.g. 512,768", minimum=64,
          maximum=16384),
    Field("sweep_epochs", "float", "epochs of the LR range test", above=0, maximum=10**6),
    Field("sweep_max_lr", "float", "LR at the end of the range test's linear sweep", minimum=1e-12, maximum=10),
    Field("bounds_steps", "pair_int", "range-test steps where the loss starts to fall and where it flattens: LO,HI",
          minimum=0, maximum=10**9),
    Field("lr_bounds", "pair_float", "measured LR bounds from a range test: LO,HI", minimum=1e-12, maximum=10),
    Field("weights", "choice", "how trained weights are stored: mixed (fp32 masters), bf16, fp16, fp32",
          choices=WEIGHTS),
    Field("weight_scale", "float", "typical weight magnitude |w| for the precision floor", above=0, maximum=100),
    Field("vram_gb", "float", "your GPU's memory in GB, to check the plan fits (e.g. 12, 24)", minimum=1,
          maximum=1024),
    Field("noise_scale", "float", "measured gradient noise scale B_simple (metrics.jsonl of a run with GA > 1)",
          above=0, maximum=10**9),
]}


def _num(text: Any, kind: str) -> Any:
    if isinstance(text, bool):
        raise ValueError
    if kind == "int":
        if isinstance(text, int):
            return text
        if isinstance(text, float):
            if not math.isfinite(text) or not text.is_integer():
                raise ValueError
            return int(text)
        s = str(text).strip()
        try:
            return int(s)
        except ValueError:
            v = float(s)  # "4.0" is fine, "4.5" is not
            if not math.isfinite(v) or not v.is_integer():
                raise ValueError from None
            return int(v)
    v = float(text) if not isinstance(text, str) else float(text.strip())
    if not math.isfinite(v):
        raise ValueError
    return v


def _bounds(f: Field, v: float) -> Optional[str]:
    if f.minimum is not None and v < f.minimum:
        return f"must be >= {f.minimum:g}"
    if f.above is not None and v <= f.above:
        return f"must be > {f.above:g}"
    if f.below is not None and v >= f.below:
        return f"must be < {f.below:g}"
    if f.maximum is not None and v > f.maximum:
        return f"must be <= {f.maximum:g}"
    return None


def _kind_text(f: Field) -> str:
    return {"int": "a whole number", "float": "a number", "ints": "whole numbers separated by commas",
            "pair_int": "two whole numbers LO,HI", "pair_float": "two numbers LO,HI"}.get(f.kind, "a value")


def _parse_field(f: Field, raw: Any) -> Any:
    """Return the parsed value, or raise ValueError with the message to show."""
    if f.kind == "bool":
        if isinstance(raw, bool):
            return raw
        s = str(raw).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"must be true or false (got {raw!r})")
    if f.kind == "choice":
        s = str(raw).strip().lower()
        if s not in f.choices:
            raise ValueError(f"must be one of {', '.join(f.choices)} (got {raw!r})")
        return s
    if f.kind in ("int", "float"):
        try:
            v = _num(raw, f.kind)
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"must be {_kind_text(f)} (got {raw!r})") from None
        problem = _bounds(f, v)
        if problem:
            raise ValueError(f"{problem} (got {raw!r})")
        return v
    if f.kind in ("ints", "pair_int", "pair_float"):
        parts = list(raw) if isinstance(raw, (list, tuple)) else [p for p in str(raw).split(",") if p.strip()]
        inner = "int" if f.kind != "pair_float" else "float"
        try:
            vals = [_num(p, inner) for p in parts]
        except (ValueError, TypeError, OverflowError):
            raise ValueError(f"must be {_kind_text(f)} (got {raw!r})") from None
        if f.kind.startswith("pair") and len(vals) != 2:
            raise ValueError(f"must be {_kind_text(f)} (got {raw!r})")
        if not vals:
            raise ValueError(f"must be {_kind_text(f)} (got {raw!r})")
        for v in vals:
            problem = _bounds(f, v)
            if problem:
                raise ValueError(f"each value {problem} (got {raw!r})")
        if f.kind.startswith("pair") and not vals[0] < vals[1]:
            raise ValueError(f"LO must be below HI (got {raw!r})")
        return tuple(vals)
    raise AssertionError(f.kind)


def _parse_strength(raw: Any) -> Tuple[float, Optional[str]]:
    if isinstance(raw, str):
        key = raw.strip().lower().replace(" ", "_").replace("-", "_")
        if key in STRENGTHS:
            return STRENGTHS[key], key
    try:
        v = _num(raw, "float")
    except (ValueError, TypeError, OverflowError):
        raise ValueError(f"must be one of {', '.join(STRENGTHS)} or a number > 0 (got {raw!r})") from None
    if v <= 0 or v > 1000:
        raise ValueError(f"must be > 0 and <= 1000 (got {raw!r})")
    name = next((k for k, x in STRENGTHS.items() if x == v), None)
    return v, name


def _parse_scheduler(raw: Any) -> str:
    s = str(raw).strip()
    if s.lower() in SCHEDULERS:
        return s.lower()
    if sched.looks_like_a1111(s):
        try:
            sched.parse_a1111(s)
        except sched.ScheduleError as e:
            raise ValueError(f"the WebUI schedule is not valid: {e}") from None
        return s
    raise ValueError(f"must be one of {', '.join(SCHEDULERS)} or a WebUI schedule like '5e-3:100, 1e-3:1000' "
                     f"(got {raw!r})")


def parse_inputs(raw: Mapping[str, Any]) -> Tuple[Optional[PlanInputs], List[InputError]]:
    """Validate raw values (strings from a form or flags, or numbers) into PlanInputs.

    Empty strings and None mean 'not given'. Returns (inputs, []) or (None, errors).
    """
    errors: List[InputError] = []
    values: Dict[str, Any] = {}
    for key, val in raw.items():
        if key not in FIELDS:
            errors.append(InputError(key, "is not a planner input"))
            continue
        if val is None or (isinstance(val, str) and not val.strip()):
            continue
        f = FIELDS[key]
        try:
            if f.kind == "strength":
                values["strength"], values["strength_name"] = _parse_strength(val)
            elif f.kind == "scheduler":
                values["scheduler"] = _parse_scheduler(val)
            else:
                values[key] = _parse_field(f, val)
        except ValueError as e:
            errors.append(InputError(key, str(e)))
    errors.extend(_cross_checks(values, {e.field for e in errors}))
    if errors:
        return None, errors
    return PlanInputs(**values), []


def _cross_checks(v: Dict[str, Any], bad: set) -> List[InputError]:
    """Checks between fields, each reported on the field the user should change."""
    out: List[InputError] = []
    for key in ("resolution", "base_resolution"):
        if key in v and v[key] % 8:
            out.append(InputError(key, f"must be a multiple of 8 (got {v[key]})"))
    if any(r % 8 for r in v.get("resolutions", ())):
        out.append(InputError("resolutions", f"each must be a multiple of 8 (got {list(v['resolutions'])})"))
    if "steps" in v and "epochs" in v:
        out.append(InputError("epochs", "give steps or epochs, not both"))
    images = v.get("images")
    if images is not None and "val_split" not in bad:
        val = val_images(images, v.get("val_split", 0.0))
        train = (images - val) * v.get("repeats", 1)
        per_step = v.get("batch_size", 1) * v.get("gpus", 1)
        if val >= images:
            out.append(InputError("val_split", f"holds out all {images} images; nothing is left to train on"))
        elif per_step > train and "batch_size" not in bad and "gpus" not in bad:
            out.append(InputError("batch_size", f"batch size x GPUs = {per_step} is more than the {train} training "
                                                f"images; use at most {train // v.get('gpus', 1)}"))
    return out


def val_images(images: int, val_split: float) -> int:
    """ceil(N*p), exactly: 100*0.07 is 7.000000000000001 in floats but 7 here."""
    exact = Fraction(repr(float(val_split))) * images
    return -((-exact.numerator) // exact.denominator)


def default_weight_scale(method: str) -> float:
    return DEFAULT_WEIGHT_SCALE.get(method, 0.03)
