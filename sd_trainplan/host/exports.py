"""A finished run's file, put where the WebUI looks for it.

- Textual Inversion: the embeddings folder, named after the token (the WebUI names an embedding
  after its file, so the word trained is the word to type), then
  `embedding_db.load_textual_inversion_embeddings(force_reload=True)`: usable in txt2img at once.
- LoRA: models/Lora (kohya keys; the Lora extension lists it after a refresh of its cards).
- Dreambooth: models/Stable-diffusion, and the checkpoint list refreshed; the loaded model is put
  back to the original (session.py): the new checkpoint is used by choosing it in the dropdown.
  When the loaded checkpoint has its config beside it (`name.yaml`: SD2 v-models, inpainting
  models, custom configs), the new one gets a copy under its own name, written first: the WebUI
  reads a checkpoint's config from there (sd_models_config.find_checkpoint_config_near_filename)
  and, without it, guesses SD1's and fails to load the model, leaving none loaded.
A name already taken gets a suffix (-1, -2, ...): nothing is overwritten.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

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


def free_stem(folder: Path, stem: str, suffixes: Sequence[str]) -> str:
    """`stem`, or `stem-1`, `stem-2`, ...: the first under which no file with any of `suffixes` exists."""
    candidate, i = stem, 0
    while any((folder / f"{candidate}{suffix}").exists() for suffix in suffixes):
        i += 1
        candidate = f"{stem}-{i}"
    return candidate


def loaded_config(model) -> Optional[str]:
    """The .yaml beside the loaded checkpoint's file, when the WebUI read its config from there. Other
    configs the WebUI guesses from the weights, and it guesses the same for a checkpoint trained from it."""
    from modules import sd_models_config
    find = getattr(sd_models_config, "find_checkpoint_config_near_filename", None)  # Forge has none: no yaml configs
    return find(getattr(model, "sd_checkpoint_info", None)) if find is not None else None


def place_checkpoint(src: Path, folder: str, stem: str, config: Optional[str]) -> Path:
    """The checkpoint, and a copy of `config` beside it under the same free name (the config first,
    so the WebUI never lists the checkpoint without it)."""
    folder_path = Path(folder)
    folder_path.mkdir(parents=True, exist_ok=True)
    stem = free_stem(folder_path, stem, [src.suffix] + ([".yaml"] if config else []))
    if config:
        atomic_write(folder_path / f"{stem}.yaml", lambda tmp: shutil.copyfile(config, tmp))
    return place(src, folder, stem)


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
