"""The tab's settings (Settings > Train Planner): where results and runs go.

Defaults are the WebUI's own folders, so a result shows up where the WebUI looks for it: the
embeddings folder (--embeddings-dir), models/Lora (--lora-dir), models/Stable-diffusion
(--ckpt-dir). An empty setting means the default.
"""
from __future__ import annotations

import os
from typing import Callable, Dict, Tuple

SECTION = ("sd_trainplan", "Train Planner")

# key -> (label, the WebUI default as a function of modules.shared and modules.paths)
FOLDERS: Dict[str, Tuple[str, Callable]] = {
    "sd_trainplan_embeddings_dir": ("Folder for trained embeddings (empty: the WebUI's embeddings folder)",
                                    lambda shared, paths: shared.cmd_opts.embeddings_dir),
    "sd_trainplan_lora_dir": ("Folder for trained LoRAs (empty: models/Lora)",
                              lambda shared, paths: getattr(shared.cmd_opts, "lora_dir", None)
                              or os.path.join(paths.models_path, "Lora")),
    "sd_trainplan_checkpoints_dir": ("Folder for Dreambooth checkpoints (empty: models/Stable-diffusion)",
                                     lambda shared, paths: getattr(shared.cmd_opts, "ckpt_dir", None)
                                     or os.path.join(paths.models_path, "Stable-diffusion")),
    "sd_trainplan_runs_dir": ("Folder for runs: configs, logs, resumable checkpoints, samples (empty:"
                              " outputs/sd_trainplan)",
                              lambda shared, paths: os.path.join(paths.data_path, "outputs", "sd_trainplan")),
}
METHOD_FOLDER = {"ti": "sd_trainplan_embeddings_dir", "lora": "sd_trainplan_lora_dir",
                 "dreambooth": "sd_trainplan_checkpoints_dir"}


def add_settings() -> None:
    """on_ui_settings: one text setting per folder, empty by default (= the WebUI's folder)."""
    from modules import shared
    for key, (label, _) in FOLDERS.items():
        shared.opts.add_option(key, shared.OptionInfo("", label, section=SECTION))


def folder(key: str) -> str:
    """The folder a setting names, or the WebUI's default for it."""
    from modules import paths, shared
    value = str(getattr(shared.opts, key, "") or "").strip()
    return os.path.abspath(value or FOLDERS[key][1](shared, paths))
