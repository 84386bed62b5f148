"""A finished run's file, put where the WebUI looks for it.

- Textual Inversion: the embeddings folder, named after the token (the WebUI names an embedding
  after its file, so the word trained is the word to type), then
  `embedding_db.load_textual_inversion_embeddings(force_reload=True)`: usable in txt2img at once.
- LoRA: models/Lora (kohya keys; the Lora extension lists it after a refresh of its cards).
- Dreambooth: models/Stable-diffusion, and the checkpoint list refreshed; the loaded model is put
  back to the original (session.py): the new checkpoint is used by choosing it in the dropdown.
  When the loaded model was built from a yaml lying beside its checkpoint, a copy lies beside the
  new one too (place_config): the WebUI would otherwise guess a config from the keys.
A name already taken gets a suffix (-1, -2, ...): nothing is overwritten.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional

from ..train.atomic import atomic_write, unique_path


def file_stem(name: str) -> str:
    """A name as a file stem, keeping what the WebUI's create_embedding keeps (letters, digits, ._- )."""
    return "".join(c for c in name if c.isalnum() or c in "._- ").strip(" .") or "embedding"


def place(src: Path, folder: str, stem: str) -> Path:
    """Put `src` into `folder` as `stem` + its suffix, under a free name: a hard link where the two
    folders share a filesystem (instant, and no second copy of a multi-GB checkpoint on disk; the run's
    files are never rewritten in place, so the two names cannot drift apart), else an atomic copy."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    while True:
        dest = unique_path(Path(folder) / f"{stem}{src.suffix}")
        try:
            os.link(src, dest)  # fails rather than replace a name taken meanwhile
            return dest
        except FileExistsError:
            continue
        except OSError:  # another filesystem, or one without hard links
            return atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))


def register_embedding(path: Path, embedding_db) -> str:
    """Make the WebUI load the folder the embedding is in, and reload; returns the name to type."""
    folder = os.path.abspath(str(path.parent))
    known = {os.path.abspath(p) for p in embedding_db.embedding_dirs}
    if folder not in known:  # a folder set in our settings that the WebUI does not read yet
        embedding_db.add_embedding_dir(folder)
    embedding_db.load_textual_inversion_embeddings(force_reload=True)
    forget_cached_conditioning()
    return path.stem


def forget_cached_conditioning() -> None:
    """txt2img keeps the last prompt's conditioning (modules/processing.py, v1.10.1: cached_c/cached_uc,
    kept across generations by the default opts.persistent_cond_cache) under a key that does not
    include the embeddings: a prompt with the new token that was used before the run would keep its
    old conditioning. Forgotten here, as the WebUI itself does when that option is off."""
    from modules import processing
    for cls, names in ((processing.StableDiffusionProcessing, ("cached_c", "cached_uc")),
                       (processing.StableDiffusionProcessingTxt2Img, ("cached_hr_c", "cached_hr_uc"))):
        for name in names:
            if hasattr(cls, name):
                setattr(cls, name, [None, None])


def place_config(model, checkpoint: Path) -> Optional[Path]:
    """The loaded model's own yaml beside a checkpoint trained from it. The WebUI builds a model from
    `<checkpoint>.yaml` when there is one, else from a config it guesses from the state dict's keys
    (modules/sd_models_config.py, v1.10.1: find_checkpoint_config_near_filename, then
    guess_model_config_from_state_dict); a model that came with its own yaml needs it again."""
    used, info = getattr(model, "used_config", None), getattr(model, "sd_checkpoint_info", None)
    if not used or info is None or os.path.abspath(used) != os.path.abspath(os.path.splitext(info.filename)[0] + ".yaml"):
        return None  # one of the WebUI's own configs: it finds it again
    dest = checkpoint.with_suffix(".yaml")
    if dest.exists():
        return None
    return atomic_write(dest, lambda tmp: shutil.copyfile(used, tmp))


def refresh_lora_list() -> Optional[str]:
    networks = sys.modules.get("networks")  # the built-in Lora extension, when loaded
    refresh = getattr(networks, "list_available_networks", None)
    if refresh is None:
        return None
    refresh()
    return "LoRA list refreshed"


def refresh_checkpoints() -> None:
    from modules import sd_models
    sd_models.list_models()
