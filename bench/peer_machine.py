"""The GPU machine made ready before any trainer is timed (bench/peer_bench.py): every trainer's
packages compiled to bytecode, the one-time compiles paid by throwaway runs, the model folder read
into the page cache before each run. Nothing here knows a trainer: peer_bench gives the commands."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]


def warm_page_cache(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass


WARM = r"""
import torch
from sd_trainplan.train.gpu_start import first_kernels
first_kernels(torch.device("cuda"))
"""


# what the trainers import: compiled to bytecode before any timed run (see with_bytecode)
PACKAGES = ("torch", "torchvision", "numpy", "PIL", "triton", "sympy", "mpmath", "networkx", "jinja2", "markupsafe",
            "diffusers", "transformers", "accelerate", "peft", "huggingface_hub", "safetensors", "tokenizers",
            "regex", "yaml", "tqdm", "filelock", "fsspec", "packaging", "requests", "urllib3", "psutil", "clip",
            "typing_extensions", "importlib_metadata", "einops", "toml", "voluptuous", "imagesize", "rich", "cv2")


def with_bytecode(env: dict, work: Path, more: List[str] = ()) -> dict:
    """`env` with PYTHONPYCACHEPREFIX in `work`, where every package the trainers import is compiled
    first. A normal install compiles a package's bytecode (pip does); the GPU machine's torch has
    none and its folder takes none, so each process there compiled torch's sources again (2.4-3.3 s
    of builtins.compile in a profile of our first update, bench/first_update_profile.py): the same
    for every trainer, but seconds that no user's machine spends. With a prefix, Python reads and
    writes all bytecode there (stdlib included, compiled here too)."""
    import importlib.util
    import sysconfig
    env = dict(env, PYTHONPYCACHEPREFIX=str(work / "pycache"))
    dirs = [sysconfig.get_paths()["stdlib"], *more]
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None:
            dirs += list(spec.submodule_search_locations or [spec.origin])
    t = time.time()
    subprocess.run([sys.executable, "-m", "compileall", "-qq", "-j", "0", *dirs], env=env, cwd=ROOT,
                   stderr=subprocess.DEVNULL)  # files that do not compile (templates, other Pythons') are skipped
    print(f"== bytecode for {len(dirs)} folders in {time.time() - t:.1f} s ({env['PYTHONPYCACHEPREFIX']})", flush=True)
    return env


def warm_machine(env: dict, out: Path, throwaway: List[List[str]]) -> None:
    """A machine's first process that runs a convolution, a matrix product and attention reads cuDNN's
    and cuBLAS's libraries (gigabytes) from disk; its first runs compile cuDNN's attention kernel for
    each new shape, and Triton our kernels, and cache both on its disk. Later processes find all that
    ready, whichever trainer they are: `throwaway` runs (a few updates of each case timed: each has
    shapes and kernel variants of its own, e.g. Textual Inversion's text-encoder attention, Dreambooth
    BS 4's trained norms at batch 4) pay it first, so the first trainer timed does not pay it for the
    others, nor a case for the next (peer_bench --cold skips them). Each writes into `out`, removed after."""
    t = time.time()
    subprocess.run([sys.executable, "-c", WARM], check=True, env=env, cwd=ROOT)
    for cmd in throwaway:
        subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        subprocess.run(["rm", "-rf", str(out)], check=True)
    print(f"== the machine warmed in {time.time() - t:.1f} s (throwaway processes)", flush=True)
