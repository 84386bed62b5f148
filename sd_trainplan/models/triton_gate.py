"""Which of our Triton kernels a run uses. SD_TRAINPLAN_TRITON names them, comma-separated
(`groupnorm`, `geglu`, or `all`); none by default, until a GPU benchmark has measured each against
what PyTorch does without it (docs/PERFORMANCE.md). Triton comes with PyTorch's CUDA builds on Linux;
where it is missing, a kernel asked for is simply not used. CPU tensors never use them, except in
Triton's interpreter (TRITON_INTERPRET=1), where the tests run them."""
from __future__ import annotations

import functools
import os

import torch

KERNELS = ("groupnorm", "geglu")
VARIABLE = "SD_TRAINPLAN_TRITON"


def asked() -> frozenset:
    names = {s.strip() for s in os.environ.get(VARIABLE, "").split(",") if s.strip()}
    if "all" in names:
        names = (names - {"all"}) | set(KERNELS)
    unknown = sorted(names - set(KERNELS))
    if unknown:
        raise ValueError(f"{VARIABLE}: unknown kernel {', '.join(unknown)} (known: {', '.join(KERNELS)}, all)")
    return frozenset(names)


@functools.lru_cache(maxsize=None)
def enabled(name: str) -> bool:
    if name not in asked():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def usable(t: torch.Tensor, name: str) -> bool:
    """Kernel `name` asked for, and `t` a tensor it takes: on a CUDA device (or any, in the
    interpreter), in a floating dtype the kernels read."""
    return ((t.is_cuda or os.environ.get("TRITON_INTERPRET") == "1")
            and t.dtype in (torch.float32, torch.bfloat16, torch.float16) and enabled(name))
