"""A .safetensors file's tensors as views of its memory map, copied once, straight to the device.

safetensors' own `get_tensor` copies each tensor out of the file's pages into new memory, holding
Python's GIL for the copy (gigabytes for a model). Here a tensor is a view of the file's pages
(`torch.frombuffer` on a private map: nothing is read until used), and the one copy is PyTorch's to
the device, made with the GIL released, so the run's other thread keeps working meanwhile
(train/rehearsal.py). A copy on the CPU is still a copy: no parameter aliases the file.
"""
from __future__ import annotations

import json
import mmap
import struct
from pathlib import Path
from typing import List

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
DTYPES.update({k: getattr(torch, v) for k, v in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"))
               if hasattr(torch, v)})  # fp8 checkpoints (torch 2.1 and later)


class SafetensorsView:
    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
            # ACCESS_COPY: a private map, so the buffer is writable (torch.frombuffer warns on a read-only
            # one); nothing is ever written to it
            self._map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        header.pop("__metadata__", None)
        self._base, self._header = 8 + n, header

    def keys(self) -> List[str]:
        return list(self._header)

    def view(self, name: str) -> torch.Tensor:
        """The tensor as a CPU view of the file's pages."""
        info = self._header[name]
        try:
            dtype = DTYPES[info["dtype"]]
        except KeyError:
            raise ValueError(f"{self.path}: tensor {name} has dtype {info['dtype']}, which is not read here") from None
        start, end = info["data_offsets"]
        shape, size = info["shape"], torch.empty((), dtype=dtype).element_size()
        if end == start:
            return torch.empty(shape, dtype=dtype)
        offset = self._base + start
        if offset % size:  # a writer that did not align its tensors: this one is copied out
            return torch.frombuffer(bytearray(self._map[offset:self._base + end]), dtype=dtype).view(shape)
        return torch.frombuffer(self._map, dtype=dtype, count=(end - start) // size, offset=offset).view(shape)


def on_device(t: torch.Tensor, device) -> torch.Tensor:
    """`t` (a view of a file's map, or a part of one) on `device`, in memory of its own."""
    out = t.to(device)
    return out.clone() if out.data_ptr() == t.data_ptr() and out.device == t.device else out
