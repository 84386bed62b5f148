"""One training run on the WebUI's loaded model: checked before, and left as it was after.

`RunOnLoadedModel.start` runs every check and records what the run may change; `finish` (on
completion, Stop or error; safe to call twice) puts it back:
- flags: every parameter's requires_grad and .grad, every module's training mode, instance
  `forward` overrides and forward hooks added during the run (gradient checkpointing, LoRA);
- Dreambooth's weights: trained in place, so a CPU copy of what it trains (in the model's own
  dtype) is taken first and copied back, dtype included; the new weights live in the exported
  checkpoint, which the user selects in the checkpoint dropdown to use it;
- Textual Inversion's temporary embedding is taken out of `embedding_db` (the exported one is
  registered by `after_job`);
- --medvram: the parts held on the GPU go back to its swapping (medvram.py).
Textual Inversion and LoRA never write a weight, so the loaded tensors stay bit-identical.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Tuple

import torch
from torch import nn

from ..train.config import TrainConfig
from . import loaded_model


class ModelFlags:
    """Everything about a module tree that training switches, except the weights themselves."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.params = [(p, p.requires_grad, p.grad) for p in model.parameters()]
        self.modules = [(m, m.training, "forward" in vars(m), set(m._forward_hooks), set(m._forward_pre_hooks))
                        for m in model.modules()]

    def restore(self) -> None:
        for p, requires_grad, grad in self.params:
            p.requires_grad_(requires_grad)
            p.grad = grad
        for m, training, own_forward, hooks, pre_hooks in self.modules:
            m.training = training
            if "forward" in vars(m) and not own_forward:
                del m.forward
            for key in [k for k in m._forward_hooks if k not in hooks]:
                del m._forward_hooks[key]
            for key in [k for k in m._forward_pre_hooks if k not in pre_hooks]:
                del m._forward_pre_hooks[key]


class WeightBackup:
    """A CPU copy of modules' parameters and buffers, each with its dtype and device, to put
    back exactly (Dreambooth turns what it trains into fp32 masters and changes it)."""

    def __init__(self, modules: List[nn.Module]):
        self.items: List[Tuple[torch.Tensor, torch.device, torch.Tensor]] = []
        seen = set()
        for m in modules:
            for t in list(m.parameters()) + list(m.buffers()):
                if id(t) not in seen:
                    seen.add(id(t))
                    self.items.append((t, t.device, t.detach().to("cpu", copy=True)))

    @property
    def nbytes(self) -> int:
        return sum(c.numel() * c.element_size() for _, _, c in self.items)

    def notice(self) -> str:
        """What a run says about it at its start."""
        return (f"Dreambooth trains the loaded weights in place: a copy of what it trains"
                f" ({self.nbytes / 2**30:.2f} GiB, in system memory) puts them back when the run ends")

    def restore(self) -> None:
        with torch.no_grad():
            for t, device, copy in self.items:
                t.data = copy.to(device)


class RunOnLoadedModel:
    def __init__(self, model, cfg: TrainConfig, cmd_opts, opts, device, lowvram_module=None,
                 note: Callable[[str], None] = print):
        self.model, self.cfg, self.device = model, cfg, device
        self.cmd_opts, self.opts, self.lowvram_module = cmd_opts, opts, lowvram_module
        self.note = note
        self.notes: List[str] = []
        self.flags: Optional[ModelFlags] = None
        self.backup: Optional[WeightBackup] = None
        self.pinned = None
        self.cleanups: List[Callable[[], None]] = []  # e.g. take the temporary embedding out
        self.finished = False

    def say(self, text: str) -> None:
        self.notes.append(text)
        self.note(text)

    def start(self) -> None:
        """Checks, then record what the run may change. Raises ConfigError with every problem."""
        loaded_model.check(self.model, self.cfg, self.cmd_opts, self.opts)
        try:
            merged = loaded_model.unmerge_lora(self.model)
            if merged:
                self.say(merged)
            self.flags = ModelFlags(self.model)
            if getattr(self.model, "lowvram", False) and self.lowvram_module is not None:
                from .medvram import HeldOnDevice
                self.pinned = HeldOnDevice(self.model, self.device, self.lowvram_module)
                self.say("--medvram: for this run the UNet, text encoder and VAE stay on the GPU"
                         f" ({self.pinned.gib:.1f} GiB of weights); the WebUI's swapping is back when it ends")
            if self.cfg.method == "dreambooth":
                parts = [self.model.model.diffusion_model]
                if self.cfg.train_text_encoder:
                    parts += _text_transformers(self.model)
                self.backup = WeightBackup(parts)
                self.say(self.backup.notice())
            from .sdxl_adapter import resolution_note
            for note in (loaded_model.precision_note(self.model, self.cfg), resolution_note(self.model, self.cfg)):
                if note:
                    self.say(note)
        except BaseException:
            self.finish()
            raise

    def finish(self) -> None:
        """Put the loaded model back as it was (safe to call more than once)."""
        if self.finished:
            return
        self.finished = True
        steps = list(self.cleanups)
        if self.backup is not None:
            steps.append(self.backup.restore)
        if self.flags is not None:
            steps.append(self.flags.restore)
        if self.pinned is not None:
            steps.append(self.pinned.release)
        self.backup = None
        run_all(steps)


def run_all(steps: List[Callable[[], None]]) -> None:
    """Each step, even if one before it failed; then the first failure is raised."""
    errors: List[BaseException] = []
    for step in steps:
        try:
            step()
        except BaseException as e:  # noqa: BLE001 - reported after every step has run
            errors.append(e)
    if errors:
        raise errors[0]


def _text_transformers(model) -> List[nn.Module]:
    """The text encoder(s) Dreambooth trains: SD1/SD2's one, or SDXL's two (the conditioner's
    text embedders, inside the WebUI's wrappers)."""
    if hasattr(model, "conditioner"):
        from ..models.sgm_adapter import text_encoders_of
        return text_encoders_of(model)
    cs = model.cond_stage_model
    clip = getattr(cs, "wrapped", cs)
    return [getattr(clip, "transformer", None) or getattr(clip, "model")]
