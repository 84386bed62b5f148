"""One training run on Forge's loaded model: checked before, and left as it was after (Forge's
session.py; the reasons are in ../shared/hosts/FORGE_TRAINING_NOTES.md and the files cited).

`RunOnForgeModel.start` (on Forge's main thread, holding its queue lock, so no generation runs
meanwhile):
1. the checks (forge_model.py);
2. LoRA merged by the last generation put back: `forge_objects` set to `forge_objects_original`
   and `refresh_loras()` on the original patchers, whose empty patch list restores the weights
   Forge's LoraLoader backed up (backend/patcher/lora.py);
3. UNet, text encoder and VAE loaded on the device once, as a generation loads them
   (`memory_management.load_models_gpu`, in inference mode); partial swap refused: a backward
   pass cannot follow weights that Forge streams in from system memory per layer;
4. the UNet's and text encoder's inference tensors made plain (forge_tensors.py);
5. forward pre-hooks on the transformer blocks' norms that give them a copy of their input:
   `BasicTransformerBlock._forward` adds into `x` in place (`x += n`) after its LayerNorms saved
   `x` for the backward pass (backend/nn/unet.py);
6. for the run, PyTorch's SDPA as the UNet's attention (Forge's CPU default, sub-quadratic
   attention, writes with `torch.exp(out=...)`, which autograd cannot follow) and Forge's CUDA
   streams off (they move manually cast weights on a second stream);
7. Dreambooth: a CPU copy of what it trains, to put back.
`finish` (completion, Stop or error; safe to call twice) undoes each step, every one even if one
before it failed, makes the tensors inference tensors again with their original values, and
clears the prompt cache (a cached conditioning would hide a new embedding).
"""
from __future__ import annotations

from typing import Callable, List, Optional

import torch

from ..train.config import ConfigError, TrainConfig
from . import forge_model
from .forge_tensors import PlainTensors
from .session import ModelFlags, WeightBackup, run_all


class RunOnForgeModel:
    def __init__(self, engine, cfg: TrainConfig, opts=None, note: Callable[[str], None] = print):
        self.engine, self.cfg, self.opts = engine, cfg, opts
        self.note = note
        self.notes: List[str] = []
        self.cleanups: List[Callable[[], None]] = []  # e.g. take the temporary embedding out
        self.undo: List[Callable[[], None]] = []      # run by finish(), last first
        self.finished = False
        self.device: Optional[torch.device] = None

    def say(self, text: str) -> None:
        self.notes.append(text)
        self.note(text)

    def start(self) -> None:
        """Checks, then make the loaded model trainable for the run. Raises ConfigError with every problem."""
        forge_model.check(self.engine, self.cfg)
        try:
            original = self.engine.forge_objects_original
            unet, clip = original.unet.model.diffusion_model, original.clip.cond_stage_model
            merged = unmerge_lora(self.engine)
            if merged:
                self.say(merged)
            self.device = load_on_device(original)
            self.engine.set_clip_skip(int(getattr(self.opts, "CLIP_stop_at_last_layers", 1) or 1))  # as txt2img

            plain = PlainTensors([unet, clip])
            plain.swap()
            self.undo.append(plain.put_back)
            flags = [ModelFlags(unet), ModelFlags(clip)]
            self.undo.append(lambda: [f.restore() for f in flags])
            handles = copy_norm_inputs(unet)
            self.undo.append(lambda: [h.remove() for h in handles])
            self.undo.append(use_sdpa_attention())
            self.undo.append(streams_off())
            if self.cfg.method == "dreambooth":
                parts = [unet] + ([clip.clip_l.transformer] if self.cfg.train_text_encoder else [])
                backup = WeightBackup(parts)
                self.undo.append(backup.restore)
                self.say(backup.notice())
            note = forge_model.precision_note(self.engine, self.cfg)
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
        steps = list(self.cleanups) + list(reversed(self.undo)) + [clear_prompt_cache]
        self.cleanups, self.undo = [], []
        run_all(steps)


def unmerge_lora(engine) -> Optional[str]:
    """Forge merges a prompt's <lora:...> into the weights when it loads the UNet for a generation
    (LoadedModel.model_load -> refresh_loras), keeping the originals as backups. The original
    patchers carry no LoRA: refreshing them puts the backups back. The next generation with a
    <lora:...> merges it again (its patched clone is loaded anew). Returns a note, or None."""
    original = engine.forge_objects_original
    patchers = [original.unet, original.clip.patcher]
    merged = [p for p in patchers if p.lora_loader.loaded_hash != str([])]
    engine.forge_objects = original.shallow_copy()
    for p in patchers:
        p.refresh_loras()
    if not merged:
        return None
    return ("put back the checkpoint's weights where Forge had merged a LoRA from the last generation's prompt;"
            " the next prompt with <lora:...> merges it again")


def load_on_device(original) -> torch.device:
    """UNet, CLIP and VAE on their devices as a generation loads them; partial swap refused."""
    from backend import memory_management
    patchers = [original.unet, original.clip.patcher, original.vae.patcher]
    with torch.inference_mode():  # as Forge always moves them: the moved tensors are inference tensors too
        memory_management.load_models_gpu(patchers)
    swapped = [lm.model.model.__class__.__name__ for lm in memory_management.current_loaded_models
               if any(lm.model is p for p in patchers) and lm.model_accelerated]
    if swapped:
        raise ConfigError([f"model: Forge keeps part of {', '.join(swapped)} in system memory (partial swap: the GPU"
                           " has too little free memory for all of it at once, or 'GPU Weights' at the top of the"
                           " page is set low); a training step's backward pass cannot follow weights streamed in"
                           " per layer. Raise GPU Weights, close what else uses the GPU, or train standalone"])
    return original.unet.load_device


def _copy_input(module, args):
    if torch.is_grad_enabled():
        return (args[0].clone(),) + tuple(args[1:])
    return None


def copy_norm_inputs(unet) -> list:
    """Forward pre-hooks on norm1/2/3 of every transformer block: each norm saves a copy of its
    input, so the block's in-place `x += n` no longer changes a tensor saved for backward."""
    handles = []
    for block in unet.modules():
        if type(block).__name__ == "BasicTransformerBlock":
            for name in ("norm1", "norm2", "norm3", "norm_in"):
                norm = getattr(block, name, None)
                if isinstance(norm, torch.nn.Module):
                    handles.append(norm.register_forward_pre_hook(_copy_input))
    return handles


def use_sdpa_attention() -> Callable[[], None]:
    """PyTorch's scaled_dot_product_attention for the UNet during the run; returns the undo."""
    import backend.nn.unet as forge_unet
    from backend.attention import attention_pytorch
    before = forge_unet.attention_function
    forge_unet.attention_function = attention_pytorch

    def undo() -> None:
        forge_unet.attention_function = before
    return undo


def streams_off() -> Callable[[], None]:
    """Forge's --cuda-stream moves manually cast weights on a second CUDA stream; during a run the
    casts happen on the compute stream, where autograd records them. Returns the undo."""
    from backend import stream
    before = stream.stream_activated
    stream.stream_activated = False

    def undo() -> None:
        stream.stream_activated = before
    return undo


def clear_prompt_cache() -> None:
    """Forget txt2img's cached conditioning (modules/processing.py, clear_prompt_cache): a prompt
    cached before the run would not see a new embedding."""
    from modules.processing import StableDiffusionProcessing
    StableDiffusionProcessing.cached_c = [None, None, None]
    StableDiffusionProcessing.cached_uc = [None, None, None]
