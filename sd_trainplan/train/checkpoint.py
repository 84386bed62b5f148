"""The run directory and resumable checkpoints.

runs/<name>-<time>/ holds config.toml, metrics.jsonl, checkpoints/step-NNNNNN.pt (trained
tensors, optimizer state and the update count: the data position follows from it, since the
sample order is keyed by update), samples/ and the exported file. Every file is written
atomically; only the last `keep_last` checkpoints are kept.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Optional, Tuple

import torch

from .atomic import append_line, atomic_write, atomic_write_text
from .config import TrainConfig, config_from_dict, read_toml, to_toml

CKPT = re.compile(r"step-(\d+)\.pt$")


def new_run_dir(cfg: TrainConfig) -> Path:
    base = Path(cfg.output).expanduser()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = base / f"{cfg.name}-{stamp}"
    i = 1
    while path.exists():
        path = base / f"{cfg.name}-{stamp}-{i}"
        i += 1
    (path / "checkpoints").mkdir(parents=True)
    return path


def write_config(run_dir: Path, cfg: TrainConfig) -> None:
    atomic_write_text(run_dir / "config.toml", to_toml(cfg))
    atomic_write_text(run_dir / "config.json", json.dumps(cfg.to_dict(), indent=1))  # readable on Python 3.10 hosts


def read_run_config(run_dir: Path) -> TrainConfig:
    run_dir = Path(run_dir)
    if (run_dir / "config.json").is_file():
        return config_from_dict(json.loads((run_dir / "config.json").read_text()))
    if (run_dir / "config.toml").is_file():
        return config_from_dict(read_toml((run_dir / "config.toml").read_text()))
    raise FileNotFoundError(f"resume: {run_dir} has no config.json or config.toml; is it a run folder?")


def latest_checkpoint(run_dir: Path) -> Optional[Tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in (Path(run_dir) / "checkpoints").glob("step-*.pt")
             for m in [CKPT.search(p.name)] if m]
    return max(found) if found else None


# 'auto' keeps the final checkpoint when it is at most this big: every LoRA and Textual Inversion run
# (megabytes), not a Dreambooth UNet's (SD1.5: 3.4 GB of fp32 weights + 6.9 GB of AdamW state, 20 s
# to write, more than the whole training of a short run; issue 16).
SMALL_STATE = 2 * 2**30


def state_bytes(method, optimizer) -> int:
    """Bytes a checkpoint holds: the trained tensors and every tensor of the optimizer's state."""
    n = sum(v.numel() * v.element_size() for v in method.trainable_state().values())
    for st in optimizer.state.values():
        n += sum(v.numel() * v.element_size() for v in st.values() if torch.is_tensor(v))
    return n


def keeps_final_checkpoint(setting: str, nbytes: int) -> bool:
    """Whether a finished run keeps a resumable checkpoint after its export ('on', 'off', or 'auto':
    when small). A Stop always saves one, and save_every saves them along the way."""
    return setting == "on" or (setting == "auto" and nbytes <= SMALL_STATE)


def save_checkpoint(run_dir: Path, step: int, method, optimizer, scaler, keep_last: int,
                    effective_batch: int = 0) -> Path:
    state = {"step": step, "effective_batch": effective_batch, "images_seen": step * effective_batch,
             "trainable": {k: v.detach().to("cpu", copy=True) for k, v in method.trainable_state().items()},
             "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else None}
    path = atomic_write(Path(run_dir) / "checkpoints" / f"step-{step:06d}.pt", lambda tmp: torch.save(state, tmp))
    old = sorted((int(m.group(1)), p) for p in path.parent.glob("step-*.pt") for m in [CKPT.search(p.name)] if m)
    for _, p in old[:-keep_last]:
        p.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, method, optimizer, scaler, effective_batch: int = 0) -> Tuple[int, str]:
    """(update to continue from, a note). The data position is the number of images seen: with the
    same effective batch that is the saved update; on a different layout (another process count,
    BS or GA) the run continues at images_seen // new effective batch, and the note says so."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    method.load_trainable_state(state["trainable"])
    optimizer.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])
    step, old_eb = int(state["step"]), int(state.get("effective_batch") or 0)
    if not effective_batch or not old_eb or old_eb == effective_batch:
        return step, ""
    seen = state.get("images_seen", step * old_eb)
    new = seen // effective_batch
    return new, (f"; the effective batch changed from {old_eb} to {effective_batch}: {seen} images were seen,"
                 f" so training continues at update {new} of the new layout")


def log_metrics(run_dir: Path, record: dict) -> None:
    append_line(Path(run_dir) / "metrics.jsonl", json.dumps(record))
