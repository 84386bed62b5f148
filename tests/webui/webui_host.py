"""The WebUI's state around the tests of sd_trainplan/host: the stand-in `modules` on sys.path, and
a tiny real ldm LatentDiffusion loaded the way the WebUI leaves its model (eval, the checkpoint's
alphas_cumprod kept as alphas_cumprod_original, CLIP hijacked, embedding database on an
embeddings folder, the Lora extension's module importable as `networks`)."""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

STANDIN = Path(__file__).resolve().parent / "standin"
if str(STANDIN) not in sys.path:
    sys.path.insert(0, str(STANDIN))

ROOT = Path(__file__).resolve().parents[2]


def tensor_hashes(model: torch.nn.Module) -> dict:
    """sha256, dtype and device of every tensor in the model's state dict, by name."""
    return {k: (hashlib.sha256(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes()).hexdigest(),
                v.dtype, v.device) for k, v in model.state_dict().items()}


def flags(model: torch.nn.Module) -> tuple:
    return (tuple(p.requires_grad for p in model.parameters()), tuple(p.grad is None for p in model.parameters()),
            tuple(m.training for m in model.modules()), tuple("forward" in vars(m) for m in model.modules()),
            tuple(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()))


def start_webui(root: Path, seed: int = 0, medvram: bool = False):
    """Fresh WebUI globals rooted at `root`, with a tiny SD1 model loaded; returns (shared, model)."""
    from modules import paths, progress, script_callbacks, sd_hijack, shared
    import networks
    paths.set_root(root)
    shared.reset()
    script_callbacks.clear_callbacks()
    progress.pending_tasks.clear()
    networks.loaded_networks.clear()
    networks.refreshes.clear()
    from sd_trainplan.models.tiny_ldm import build_tiny_ldm
    model = build_tiny_ldm(seed).eval()  # its CLIP's output mean is away from 0, as the WebUI's emphasis needs
    model.alphas_cumprod_original = model.alphas_cumprod  # as sd_models.load_model_weights does
    model.lowvram = False
    if medvram:  # sd_models.load_model: lowvram.apply(m) comes before the hijack
        from modules import lowvram
        shared.cmd_opts.medvram = True
        lowvram.apply(model)
    hijack = sd_hijack.reset()
    hijack.hijack(model)
    shared.sd_model = model
    Path(shared.cmd_opts.embeddings_dir).mkdir(parents=True, exist_ok=True)
    hijack.embedding_db.load_textual_inversion_embeddings(force_reload=True)
    return shared, model
