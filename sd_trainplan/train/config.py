"""TrainConfig: everything a run needs, as one frozen dataclass saved beside the run as TOML.

`check_config` reports every bad value with the field's name before any model is loaded.
`plan_to_train_config` (in apply.py) fills one from the planner: the "Apply to trainer" button.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Dict, List, Mapping, Tuple

from ..plan import schedule as sched

METHODS = ("dreambooth", "ti", "lora")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
OPTIMIZERS = ("adamw", "adamw8bit")


@dataclass(frozen=True)
class Concept:
    """One Dreambooth concept (seed 002's concept list): its folder, prompt and class."""
    data: str
    instance_prompt: str = "a photo of [name]"
    class_prompt: str = ""
    class_data: str = ""


@dataclass(frozen=True)
class TrainConfig:
    # what and where
    method: str = "dreambooth"
    model: str = "tiny"
    model_config: str = ""              # diffusers folder with configs, for a single-file model
    data: str = ""
    output: str = "runs"
    name: str = "run"
    seed: int = 0
    device: str = "auto"                # auto | cpu | cuda | cuda:N
    # prompts and tokens
    instance_prompt: str = "a photo of [name]"   # [name] -> token, [filewords] -> the image's caption
    token: str = "sks"
    init_word: str = "person"           # Textual Inversion
    vectors: int = 1                    # Textual Inversion vectors per token
    class_prompt: str = ""              # Dreambooth prior preservation
    class_data: str = ""
    num_class_images: int = 0
    prior_loss_weight: float = 1.0
    concepts: Tuple[Concept, ...] = ()  # extra Dreambooth concepts trained in the same run
    # what trains
    train_text_encoder: bool = False
    text_encoder_lr: float = 0.0        # 0: same as lr
    rank: int = 4                       # LoRA
    alpha: float = 4.0
    lora_conv: bool = False
    lora_scope: str = "attention"       # attention (q, k, v, out) | transformer (every linear there, kohya's default)
    # length, batch, LR
    steps: int = 100                    # weight updates
    batch_size: int = 1
    grad_accum: int = 1
    lr: float = 1e-5
    scheduler: str = "constant"         # a planner schedule name or the WebUI's "rate:step, ..." text
    warmup: int = 0
    lr_min: float = 0.0                 # cyclical: lower bound
    cycle_steps: int = 0                # cyclical: half-cycle length (0: half the run)
    optimizer: str = "adamw"
    weight_decay: float = 1e-2
    max_grad_norm: float = 1.0          # 0: no clipping
    precision: str = "auto"
    gradient_checkpointing: bool = False
    cuda_graphs: bool = True            # replay each update from CUDA graphs where possible (fast path)
    grad_reduce: str = "auto"           # several GPUs: gradients averaged in bf16 (auto, on CUDA) or fp32
    channels_last: str = "auto"         # NHWC UNet weights on CUDA (standalone models): auto (BS <= 8) | on | off
    cudnn_benchmark: str = "auto"       # CUDA: time cuDNN's convolution algorithms per shape (auto | on | off)
    compile: bool = False               # experimental: torch.compile the UNet's training forward (standalone, CUDA)
                                        # 1.26x faster updates after ~2 min of compiling (docs/PERFORMANCE.md)
    min_snr_gamma: float = 0.0          # 0: off
    noise_offset: float = 0.0
    noise_scale: bool = True            # measure B_simple when accumulating (McCandlish et al. 2018)
    # data
    resolution: int = 512
    buckets: bool = True
    repeats: int = 1
    flip: float = 0.0
    shuffle_tags: bool = False
    keep_tokens: int = 0
    caption_dropout: float = 0.0
    val_split: float = 0.0
    val_every: int = 0                  # updates between validation passes (0: at the end only, if any)
    val_timesteps: int = 8              # stratified timesteps per held-out image
    skip_bad_images: bool = False
    # outputs
    save_every: int = 0
    keep_last: int = 2
    final_checkpoint: str = "auto"      # resumable checkpoint after the export: auto (when small: LoRA, TI) | on | off
    sample_every: int = 0
    sample_prompt: str = ""
    sample_seed: int = 0
    sample_cfg: float = 7.0
    sample_steps: int = 20
    log_every: int = 10
    export_format: str = "safetensors"  # Textual Inversion: safetensors | pt (the WebUI's layout)

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["concepts"] = [asdict(c) for c in self.concepts]
        return d

    def replace(self, **kw) -> "TrainConfig":
        return replace(self, **kw)


class ConfigError(ValueError):
    """One line per problem, each naming its field."""

    def __init__(self, problems: List[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """Build a TrainConfig from a TOML/JSON dict, converting types and naming any unknown field."""
    known = {f.name: f for f in fields(TrainConfig)}
    problems, values = [], {}
    for key, val in raw.items():
        if key not in known:
            problems.append(f"{key}: not a training setting")
            continue
        if key == "concepts":
            try:
                values[key] = tuple(Concept(**c) for c in val)
            except TypeError as e:
                problems.append(f"concepts: {e}")
            continue
        default = known[key].default
        try:
            values[key] = _coerce(val, default)
        except (TypeError, ValueError):
            problems.append(f"{key}: expected {type(default).__name__}, got {val!r}")
    if problems:
        raise ConfigError(problems)
    return TrainConfig(**values)


def _coerce(val: Any, default: Any) -> Any:
    if isinstance(default, bool):
        if isinstance(val, bool):
            return val
        s = str(val).strip().lower()
        if s in ("1", "true", "yes", "on"):
            return True
        if s in ("0", "false", "no", "off"):
            return False
        raise ValueError(val)
    if isinstance(default, int):
        f = float(val)
        if not f.is_integer():
            raise ValueError(val)
        return int(f)
    if isinstance(default, float):
        return float(val)
    return str(val)


def check_config(c: TrainConfig) -> List[str]:
    """Problems with field values alone (data and model are checked where they are read)."""
    p: List[str] = []

    def need(ok: bool, field_name: str, msg: str) -> None:
        if not ok:
            p.append(f"{field_name}: {msg}")

    need(c.method in METHODS, "method", f"must be one of {', '.join(METHODS)} (got {c.method!r})")
    need(c.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
    need(c.optimizer in OPTIMIZERS, "optimizer", f"must be one of {', '.join(OPTIMIZERS)}")
    for name in ("steps", "batch_size", "grad_accum", "repeats", "vectors", "rank", "val_timesteps",
                 "sample_steps", "log_every", "keep_last"):
        need(getattr(c, name) >= 1, name, f"must be >= 1 (got {getattr(c, name)})")
    for name in ("warmup", "save_every", "sample_every", "val_every", "num_class_images", "cycle_steps",
                 "keep_tokens"):
        need(getattr(c, name) >= 0, name, f"must be >= 0 (got {getattr(c, name)})")
    for name in ("lr", "alpha"):
        v = getattr(c, name)
        need(math.isfinite(v) and v > 0, name, f"must be a number > 0 (got {v})")
    for name in ("text_encoder_lr", "lr_min", "weight_decay", "max_grad_norm", "min_snr_gamma", "noise_offset",
                 "prior_loss_weight", "sample_cfg"):
        v = getattr(c, name)
        need(math.isfinite(v) and v >= 0, name, f"must be a number >= 0 (got {v})")
    for name in ("flip", "caption_dropout"):
        v = getattr(c, name)
        need(0 <= v <= 1, name, f"must be between 0 and 1 (got {v})")
    need(0 <= c.val_split < 1, "val_split", f"must be >= 0 and < 1 (got {c.val_split})")
    need(c.resolution >= 64 and c.resolution % 8 == 0, "resolution", f"must be a multiple of 8, >= 64 (got {c.resolution})")
    need(bool(c.data.strip()), "data", "give the folder of training images")
    need(bool(c.name.strip()) and "/" not in c.name and "\\" not in c.name, "name",
         f"must be a plain file name (got {c.name!r})")
    need(c.export_format in ("safetensors", "pt"), "export_format", "must be safetensors or pt")
    need(c.lora_scope in ("attention", "transformer"), "lora_scope", "must be attention or transformer")
    need(c.grad_reduce in ("auto", "bf16", "fp32"), "grad_reduce", "must be auto, bf16 or fp32")
    for name in ("channels_last", "cudnn_benchmark", "final_checkpoint"):
        need(getattr(c, name) in ("auto", "on", "off"), name, "must be auto, on or off")
    need(c.export_format == "safetensors" or c.method == "ti", "export_format",
         "pt (the WebUI's embedding layout) is for Textual Inversion only")
    if c.method == "ti":
        need(bool(c.token.strip()) and " " not in c.token.strip(), "token", f"must be one word (got {c.token!r})")
        need(bool(c.init_word.strip()), "init_word", "give a word the new token starts from, e.g. 'person'")
    if c.method == "dreambooth" and c.num_class_images:
        need(bool(c.class_prompt.strip()), "class_prompt", "is needed for prior preservation (num_class_images > 0)")
    try:
        if sched.looks_like_a1111(c.scheduler):
            sched.parse_a1111(c.scheduler, c.steps)
        else:
            need(c.scheduler in sched.NAMES + sched.SWEEPS, "scheduler",
                 f"must be one of {', '.join(sched.NAMES)} or 'rate:step, ...'")
    except sched.ScheduleError as e:
        p.append(f"scheduler: {e}")
    need(c.warmup <= c.steps or c.scheduler == "constant", "warmup", f"is longer than the run ({c.warmup} > {c.steps})")
    return p


def lr_schedule(c: TrainConfig) -> sched.Schedule:
    """The planner's schedule math for this run (one module for the plot and the trainer)."""
    if sched.looks_like_a1111(c.scheduler):
        pieces = sched.parse_a1111(c.scheduler, c.steps)
        return sched.Schedule("a1111", max(r for r, _ in pieces), c.steps, pieces=pieces)
    if c.scheduler == "cyclical":
        base = c.lr_min if 0 < c.lr_min < c.lr else c.lr / 4
        return sched.Schedule("cyclical", c.lr, c.steps, base_lr=base, step_size=c.cycle_steps or max(1, c.steps // 2))
    if c.scheduler in sched.SWEEPS:
        return sched.Schedule(c.scheduler, c.lr, c.steps, base_lr=c.lr_min)
    return sched.Schedule(c.scheduler, c.lr, c.steps, warmup=c.warmup)


# --- TOML (written by us, read with tomllib on 3.11+, tomli where installed) --------------------

def to_toml(c: TrainConfig) -> str:
    lines = ["# sd_trainplan training config"]
    d = c.to_dict()
    concepts = d.pop("concepts")
    for k, v in d.items():
        lines.append(f"{k} = {_toml_value(v)}")
    for concept in concepts:
        lines.append("")
        lines.append("[[concepts]]")
        for k, v in concept.items():
            lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{s}"'


def read_toml(text: str) -> Dict[str, Any]:
    try:
        import tomllib  # novermin (Python 3.11+; the ImportError fallback below serves 3.10)
    except ImportError:  # pragma: no cover - the WebUI's Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise ConfigError(["config: reading TOML needs Python 3.11 or the 'tomli' package"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"config: not valid TOML: {e}"]) from None


def default_field_values() -> Dict[str, Any]:
    return {f.name: f.default for f in fields(TrainConfig) if f.default is not field}
