"""The standalone model code (diffusers' UNet and VAE, transformers' CLIP text encoder) imported in a
thread from the start of a training process, so the main thread can meanwhile check the data, start
the GPU and read the weights onto it (issue 16).

Those imports are the largest fixed cost of a short run: 5-6 s on the H200 machine of
docs/PERFORMANCE.md (diffusers pulls in torch._dynamo with sympy and triton, and transformers' model
utilities), seconds on a desktop. Reading a file, unpacking bytecode and the GPU's own work release
the GIL, so the two threads overlap where one of them waits.

One rule keeps it safe: the main thread never imports these packages itself while the thread may
still be importing them (two threads importing one package's circular modules can each get the
other's half-initialised module); it calls `wait()` first, which the loaders do.
"""
from __future__ import annotations

import threading
from typing import Optional

_thread: Optional[threading.Thread] = None


def _import_model_code() -> None:
    try:
        from diffusers import AutoencoderKL, UNet2DConditionModel  # noqa: F401
        from transformers import CLIPTextModel, CLIPTokenizer  # noqa: F401
    except Exception:  # noqa: BLE001 - the loader imports them again after wait() and reports that error
        pass


def start() -> None:
    """Begin importing the model code (once per process). The packages the thread shares with the
    main thread's own work before wait() (PIL for the data checks, safetensors for the weights) are
    imported here first, on the main thread."""
    global _thread
    if _thread is not None:
        return
    import PIL.Image  # noqa: F401
    import safetensors  # noqa: F401
    _thread = threading.Thread(target=_import_model_code, name="import model code", daemon=True)
    _thread.start()


def wait() -> None:
    """Return once the thread (if any) is done. An import that failed there fails again in the
    caller's own import, which reports it as usual."""
    if _thread is not None:
        _thread.join()
