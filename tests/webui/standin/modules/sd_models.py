"""Mirrors modules/sd_models.py (v1.10.1) as far as host/ uses it: list_models rescans the
checkpoint folder (--ckpt-dir or models/Stable-diffusion) for .ckpt/.safetensors files. Left
out: hashes, titles and the rest of checkpoint handling."""
import glob
import os

from modules import paths, shared

checkpoints_list = {}


def list_models():
    checkpoints_list.clear()
    folder = shared.cmd_opts.ckpt_dir or os.path.join(paths.models_path, "Stable-diffusion")
    for path in sorted(glob.glob(os.path.join(folder, "**", "*"), recursive=True)):
        if path.lower().endswith((".ckpt", ".safetensors")):
            checkpoints_list[os.path.basename(path)] = path
