"""The WebUI's state around the tests of sd_trainplan/host: the stand-in `modules` on sys.path, and
a tiny real ldm LatentDiffusion (or sgm DiffusionEngine: SDXL) loaded the way the WebUI leaves its
model (eval, the checkpoint's alphas_cumprod kept as alphas_cumprod_original, CLIP hijacked,
embedding database on an embeddings folder, the Lora extension's module importable as `networks`)."""
from __future__ import annotations

import copy
import functools
import hashlib
import sys
from pathlib import Path

import torch

STANDIN = Path(__file__).resolve().parent / "standin"
if str(STANDIN) not in sys.path:
    sys.path.insert(0, str(STANDIN))

ROOT = Path(__file__).resolve().parents[2]
HOSTS_TESTS = ROOT / "tests" / "hosts"  # make_tiny_sdxl.py: the tiny SDXL the real WebUI tests load too


def tensor_hashes(model: torch.nn.Module) -> dict:
    """sha256, dtype and device of every tensor in the model's state dict, by name."""
    return {k: (hashlib.sha256(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()).hexdigest(),
                v.dtype, v.device) for k, v in model.state_dict().items()}


def flags(model: torch.nn.Module) -> tuple:
    return (tuple(p.requires_grad for p in model.parameters()), tuple(p.grad is None for p in model.parameters()),
            tuple(m.training for m in model.modules()), tuple("forward" in vars(m) for m in model.modules()),
            tuple(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()))


def start_webui(root: Path, seed: int = 0, medvram: bool = False, sdxl: bool = False):
    """Fresh WebUI globals rooted at `root`, with a tiny SD1 (or SDXL) model loaded; returns (shared, model)."""
    from modules import paths, progress, script_callbacks, sd_hijack, shared
    import networks
    paths.set_root(root)
    shared.reset()
    script_callbacks.clear_callbacks()
    progress.pending_tasks.clear()
    networks.loaded_networks.clear()
    networks.refreshes.clear()
    if sdxl:  # sd_models.load_model_weights: extend_sdxl, then the schedule kept as alphas_cumprod_original
        from modules import sd_models_xl
        model = copy.deepcopy(tiny_sdxl(seed))
        sd_models_xl.extend_sdxl(model)
        model.is_sdxl = True
    else:
        from sd_trainplan.models.tiny_ldm import build_tiny_ldm
        model = build_tiny_ldm(seed).eval()
        # The WebUI's default emphasis ("Original") rescales CLIP's output to keep its mean, dividing by
        # it. A trained CLIP's output mean sits well away from 0; a random tiny one's final layer norm
        # (bias 0) puts it at about 0, and that division would blow the gradient up. Give it an offset.
        with torch.no_grad():
            model.cond_stage_model.transformer.text_model.final_layer_norm.bias.fill_(0.5)
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


@functools.lru_cache(maxsize=None)
def tiny_sdxl(seed: int = 0, prediction: str = "eps"):
    """The tiny SDXL DiffusionEngine of tests/hosts/make_tiny_sdxl.py (real sgm, from the shared
    generative-models source; built once per process: callers copy it)."""
    try:
        import sgm
    except ImportError as e:
        raise RuntimeError("sgm is not importable: `make envs` unpacks it into .venv-a1111 from HOSTS_SRC's"
                           " generative-models tarball (with kornia and scipy from requirements/a1111.txt)") from e
    if str(HOSTS_TESTS) not in sys.path:
        sys.path.insert(0, str(HOSTS_TESTS))
    import make_tiny_sdxl
    from sd_trainplan.models.clip_vocab import default_cache_dir
    sgm_root = Path(sgm.__file__).resolve().parents[1]
    clip_l = default_cache_dir() / f"tiny-sdxl-clip-l-seed{seed}"
    if not (clip_l / "config.json").is_file():
        make_tiny_sdxl.write_clip_l(clip_l, seed)
    return make_tiny_sdxl.build(make_tiny_sdxl.tiny_sdxl_config(sgm_root, clip_l, prediction), seed)
