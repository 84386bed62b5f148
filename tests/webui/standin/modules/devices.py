"""Mirrors modules/devices.py (v1.10.1): the module-level device and dtypes, cond_cast_unet and
torch_gc (CUDA only; no mps/xpu/npu here)."""
import torch

cpu = torch.device("cpu")
device = torch.device("cpu")  # the WebUI sets it to its GPU at start-up
force_fp16 = False
dtype = torch.float16
dtype_vae = torch.float16
dtype_unet = torch.float16
dtype_inference = torch.float16
unet_needs_upcast = False
fp8 = False


def cond_cast_unet(input):
    if force_fp16:
        return input.to(torch.float16)
    return input.to(dtype_unet) if unet_needs_upcast else input


def torch_gc():
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.ipc_collect()


def torch_npu_set_device():
    pass  # no NPU
