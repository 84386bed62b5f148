"""Which of our Triton kernels a run uses, from SD_TRAINPLAN_TRITON:

- unset (or `auto`), the default: all of them, inside a CUDA-graphed update only (train/cuda_graph.py
  enters `graphed_update()` around its warm-up and capture). There they were measured faster on an
  H200 (2026-12-01, docs/PERFORMANCE.md: 6-20% less per update); run eagerly, where Triton's Python
  launch (tens of microseconds) is paid at every call, they are slower than PyTorch's (bench/triton_kernels_bench.py).
- `groupnorm`, `geglu`, `adamw` (comma-separated) or `all`: those kernels wherever they apply, eager
  or graphed (`adamw`, train/bf16_weights.py, exists in the graphed update only).
- under torch.compile (compile = true), never: it makes its own.
- `off`: none.

Triton 3 or later is needed (it comes with PyTorch's CUDA builds on Linux; the WebUIs' torch 2.1 and
2.3 bring Triton 2, which these kernels were never run on): without it no kernel is used. The default
also waits for proof: the kernels compiled and ran once in this process (`prove`, which the start
thread calls). Triton builds its launcher with the machine's C compiler and Python's headers, which
not every machine has: where that fails, the run says why and trains with PyTorch's. CPU
tensors never use them, except in Triton's interpreter (TRITON_INTERPRET=1), where the tests run them.
"""
from __future__ import annotations

import contextlib
import functools
import os
import threading
from typing import Callable, Optional

import torch

KERNELS = ("groupnorm", "geglu", "adamw")
VARIABLE = "SD_TRAINPLAN_TRITON"
_here = threading.local()  # per thread: the start thread compiles while the main thread loads
_proof = {"tried": False, "problem": None}  # for the process: did the kernels compile and run here


def asked() -> Optional[frozenset]:
    """The kernels named in SD_TRAINPLAN_TRITON, or None for the default (auto)."""
    return _parse(os.environ.get(VARIABLE, "").strip())


@functools.lru_cache(maxsize=None)
def _parse(value: str) -> Optional[frozenset]:
    if value in ("", "auto"):
        return None
    names = {s.strip() for s in value.split(",") if s.strip()}
    if names == {"off"}:
        return frozenset()
    if "all" in names:
        names = (names - {"all"}) | set(KERNELS)
    unknown = sorted(names - set(KERNELS))
    if unknown:
        raise ValueError(f"{VARIABLE}: unknown kernel {', '.join(unknown)} (known: {', '.join(KERNELS)}, all, auto, off)")
    return frozenset(names)


def may_run() -> bool:
    """Whether a run may use any kernel (so that the start thread compiles them ahead)."""
    names = asked()
    return installed() and (names is None or bool(names))


@contextlib.contextmanager
def graphed_update():
    """Inside: the default uses the kernels (this thread only)."""
    before = getattr(_here, "graphed", False)
    _here.graphed = True
    try:
        yield
    finally:
        _here.graphed = before


def prove(compile_them: Callable[[], None]) -> Optional[str]:
    """Run `compile_them` (calls of each kernel, in a graphed update) once per process; None when
    they compiled and ran, else the problem, which turns the default off for this process."""
    if not _proof["tried"]:
        _here.proving = True
        try:
            with graphed_update():
                compile_them()
        except Exception as e:  # noqa: BLE001 - any failure: PyTorch's kernels instead, and the run says why
            _proof["problem"] = f"{type(e).__name__}: {e}".strip()[:300]
        finally:
            _here.proving = False
            _proof["tried"] = True
    return _proof["problem"]


@functools.lru_cache(maxsize=None)
def installed() -> bool:
    try:
        import triton
    except ImportError:
        return False
    return int(triton.__version__.split(".")[0]) >= 3


def enabled(name: str) -> bool:
    if getattr(getattr(torch, "compiler", None), "is_compiling", lambda: False)():
        return False  # torch.compile makes its own fused kernels (and would break its graph on os.environ)
    names = asked()
    if names is None:  # the default: in a graphed update, once proven (or while proving)
        proven = getattr(_here, "proving", False) or (_proof["tried"] and _proof["problem"] is None)
        return getattr(_here, "graphed", False) and proven and installed()
    return name in names and installed()


def usable(t: torch.Tensor, name: str) -> bool:
    """Kernel `name` wanted here, and `t` a tensor it takes: on a CUDA device (or any, in the
    interpreter), in a floating dtype the kernels read."""
    return ((t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")
            and t.dtype in (torch.float32, torch.bfloat16, torch.float16) and enabled(name))
