"""The three methods: what each trains, what [name] becomes in prompts, what it exports.

Dreambooth trains the UNet (and optionally the text encoder); Textual Inversion trains only
new token vectors; LoRA trains small down/up matrices beside frozen layers. Each method
exposes the same few calls to the loop.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import nn

from .atomic import atomic_write, unique_path
from .config import TrainConfig
from .lora import LoRASet


def save_safetensors(path: Path, tensors: Dict[str, torch.Tensor], metadata: Dict[str, str],
                     cast: Optional[Callable[[str, torch.Tensor], torch.dtype]] = None) -> Path:
    """Atomically, under a free name; tensors may stay on the GPU (safetensors_out.py packs them there)."""
    from .safetensors_out import write_safetensors
    path = unique_path(path)
    return atomic_write(path, lambda tmp: write_safetensors(tmp, tensors, metadata, cast))


def trained_in_fp32(cfg: TrainConfig) -> Tuple[str, ...]:
    """The model parts a method trains in place, which load in fp32 (their master weights) while the
    frozen parts load in the compute dtype: Dreambooth's UNet (and text encoder, when it trains)."""
    if cfg.method != "dreambooth":
        return ()
    return ("unet", "text_encoder") if cfg.train_text_encoder else ("unet",)


class Dreambooth:
    name = "dreambooth"

    def __init__(self, adapter, cfg: TrainConfig):
        self.adapter, self.cfg = adapter, cfg
        self.fresh_text = cfg.train_text_encoder  # conditioning must be recomputed each step
        self.modules: List[nn.Module] = [adapter.unet()] + ([adapter.text_encoder()] if cfg.train_text_encoder else [])
        for m in self.modules:
            m.float()  # fp32 master weights for what trains, whatever the model was loaded in
            m.requires_grad_(True)
            m.train()

    def param_groups(self) -> List[dict]:
        groups = [{"params": [p for p in self.adapter.unet().parameters()], "lr_scale": 1.0}]
        if self.cfg.train_text_encoder:
            te_lr = self.cfg.text_encoder_lr or self.cfg.lr
            groups.append({"params": list(self.adapter.text_encoder().parameters()), "lr_scale": te_lr / self.cfg.lr})
        return groups

    def prompt_name(self) -> str:
        return self.cfg.token

    def trainable_state(self) -> Dict[str, torch.Tensor]:
        out = {f"unet.{k}": v for k, v in self.adapter.unet().state_dict().items()}
        if self.cfg.train_text_encoder:
            out.update({f"te.{k}": v for k, v in self.adapter.text_encoder().state_dict().items()})
        return out

    def load_trainable_state(self, state: Dict[str, torch.Tensor]) -> None:
        self.adapter.unet().load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("unet.")})
        if self.cfg.train_text_encoder:
            self.adapter.text_encoder().load_state_dict({k[3:]: v for k, v in state.items() if k.startswith("te.")})

    def export(self, folder: Path, step: int) -> Path:
        # Weights in fp16, as the WebUI's checkpoints; ldm's noise-schedule buffers (top-level keys:
        # alphas_cumprod, betas, ...) stay fp32: fp16 rounds alphas_cumprod near 1 and moves the
        # noise level sqrt(1-a) at small t by up to 7%, and the WebUI loads them from the file as they are.
        # The cast happens piece by piece as the file is written, so no second whole copy is made.
        meta = {"sd_trainplan": "dreambooth", "step": str(step), "token": self.cfg.token}
        return save_safetensors(folder / f"{self.cfg.name}.safetensors", self.adapter.checkpoint_state(), meta,
                                cast=lambda k, v: torch.float16 if v.is_floating_point() and "." in k else v.dtype)

    def close(self) -> None:
        for m in self.modules:
            m.requires_grad_(False)
            m.eval()


class TextualInversion:
    name = "ti"
    fresh_text = True  # the vectors pass through the text encoder each step (its weights stay frozen)

    def __init__(self, adapter, cfg: TrainConfig):
        self.adapter, self.cfg = adapter, cfg
        self.token = adapter.add_token(cfg.token, cfg.vectors, cfg.init_word)
        # SDXL: one set of vectors per text encoder ({"clip_l": ..., "clip_g": ...}, the WebUI's names)
        self.parts: Dict[str, nn.Parameter] = getattr(self.token, "parts", None) or {"vectors": self.token.vectors}

    def param_groups(self) -> List[dict]:
        return [{"params": list(self.parts.values()), "lr_scale": 1.0, "weight_decay": 0.0}]

    def prompt_name(self) -> str:
        return self.token.prompt_text

    def trainable_state(self) -> Dict[str, torch.Tensor]:
        return dict(self.parts)

    def load_trainable_state(self, state: Dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for k, p in self.parts.items():
                p.copy_(state[k])

    def export(self, folder: Path, step: int) -> Path:
        vecs = {k: p.detach().float().cpu() for k, p in self.parts.items()}
        sdxl = "vectors" not in vecs  # the WebUI reads an SDXL embedding as a dict of clip_l and clip_g
        if self.cfg.export_format == "pt":  # the WebUI's own layout (modules/textual_inversion)
            path = unique_path(folder / f"{self.cfg.name}.pt")
            data = vecs if sdxl else {"string_to_token": {"*": 265}, "string_to_param": {"*": vecs["vectors"]},
                                      "name": self.cfg.name, "step": step, "sd_checkpoint": None,
                                      "sd_checkpoint_name": None}
            return atomic_write(path, lambda tmp: torch.save(data, tmp))
        meta = {"sd_trainplan": "ti", "step": str(step), "token": self.cfg.token, "init_word": self.cfg.init_word}
        tensors = vecs if sdxl else {"emb_params": vecs["vectors"]}
        return save_safetensors(folder / f"{self.cfg.name}.safetensors", tensors, meta)

    def close(self) -> None:
        pass


class LoRAMethod:
    name = "lora"

    def __init__(self, adapter, cfg: TrainConfig):
        self.adapter, self.cfg = adapter, cfg
        self.fresh_text = cfg.train_text_encoder  # conditioning must be recomputed each step
        targets = scoped(adapter.lora_targets(cfg.train_text_encoder, cfg.lora_conv), cfg.lora_scope, cfg.lora_conv)
        if not targets:
            raise ValueError("method: the model has no layers LoRA can attach to")
        self.set = LoRASet(targets, cfg.rank, cfg.alpha, adapter.device, cfg.seed)
        self.set.attach()

    def param_groups(self) -> List[dict]:
        unet, te = [], []
        for name, lora in zip(self.set.names, self.set.loras):
            (te if name.startswith("lora_te") else unet).extend(lora.parameters())
        groups = [{"params": unet, "lr_scale": 1.0}]
        if te:
            groups.append({"params": te, "lr_scale": (self.cfg.text_encoder_lr or self.cfg.lr) / self.cfg.lr})
        return groups

    def prompt_name(self) -> str:
        return self.cfg.token

    def trainable_state(self) -> Dict[str, torch.Tensor]:
        return dict(self.set.state_dict())

    def load_trainable_state(self, state: Dict[str, torch.Tensor]) -> None:
        self.set.load_state_dict(state)

    def export(self, folder: Path, step: int) -> Path:
        meta = {"ss_network_module": "networks.lora", "ss_network_dim": str(self.cfg.rank),
                "ss_network_alpha": str(self.cfg.alpha), "ss_steps": str(step), "sd_trainplan": "lora"}
        return save_safetensors(folder / f"{self.cfg.name}.safetensors", self.set.kohya_state(), meta)

    def close(self) -> None:
        self.set.detach()


ATTENTION = re.compile(r"_attn[12]_to_(q|k|v|out_0)$")


def scoped(targets: Dict[str, nn.Module], scope: str, conv: bool) -> Dict[str, nn.Module]:
    """'attention': the UNet's attention projections (q, k, v, out), as the diffusers examples and
    most guides train; 'transformer': every linear of the transformer blocks (kohya's default).
    3x3 convs (lora_conv) and the text encoder's layers are kept either way."""
    if scope == "transformer":
        return targets
    return {n: m for n, m in targets.items()
            if not n.startswith("lora_unet_") or ATTENTION.search(n)
            or (conv and isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1))}


METHODS = {"dreambooth": Dreambooth, "ti": TextualInversion, "lora": LoRAMethod}


def make_method(adapter, cfg: TrainConfig):
    return METHODS[cfg.method](adapter, cfg)
