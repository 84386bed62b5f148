"""Write a .safetensors file from tensors where they are (GPU or CPU), in large pieces.

safetensors' `save_file` wants CPU tensors: an exporter first copies each of a checkpoint's ~1,100
tensors to the host one synchronous copy at a time, then the library copies each again into a bytes
object before writing. Here the tensors are cast (e.g. fp32 masters to fp16) and packed on their own
device into pieces of up to 256 MiB, each piece crosses to the host in one copy (into pinned memory
from a GPU) and is written from there. The layout is the format's own (an 8-byte little-endian header
length, the JSON header padded with spaces to 8 bytes, then the tensors' bytes in header order), and
the tests read it back with the safetensors library.
"""
from __future__ import annotations

import json
import struct
from typing import Callable, Dict, List, Optional, Tuple

import torch

DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
          torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
          torch.bool: "BOOL"}
PIECE = 256 * 2**20

Cast = Callable[[str, torch.Tensor], torch.dtype]


def write_safetensors(path: str, tensors: Dict[str, torch.Tensor], metadata: Optional[Dict[str, str]] = None,
                      cast: Optional[Cast] = None) -> None:
    """Write `tensors` (each cast to cast(name, tensor) when given) to `path` (the caller makes it atomic)."""
    items: List[Tuple[str, torch.Tensor, torch.dtype]] = []
    for name, t in tensors.items():
        dtype = cast(name, t) if cast is not None else t.dtype
        if dtype not in DTYPES:
            raise TypeError(f"{name}: dtype {dtype} cannot be written to safetensors")
        items.append((name, t.detach(), dtype))
    header: Dict[str, object] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, t, dtype in items:
        size = t.numel() * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": DTYPES[dtype], "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        _write_data(f, items)


def _write_data(f, items) -> None:
    staging: Dict[torch.device, torch.Tensor] = {}
    piece: List[torch.Tensor] = []
    size, device = 0, None
    for _, t, dtype in items:
        raw = t.to(dtype).contiguous().reshape(-1).view(torch.uint8)
        if piece and (raw.device != device or size + raw.numel() > PIECE):
            _flush(f, piece, staging)
            piece, size = [], 0
        piece.append(raw)
        size, device = size + raw.numel(), raw.device
    if piece:
        _flush(f, piece, staging)


def _flush(f, piece: List[torch.Tensor], staging: Dict[torch.device, torch.Tensor]) -> None:
    device = piece[0].device
    if device.type == "cpu":  # already in host memory: written as they are, no packing
        for raw in piece:
            f.write(memoryview(raw.numpy()))
        return
    packed = torch.cat(piece) if len(piece) > 1 else piece[0]
    n = packed.numel()
    host = staging.get(device)
    if host is None or host.numel() < n:
        host = staging[device] = torch.empty(max(n, PIECE), dtype=torch.uint8, pin_memory=device.type == "cuda")
    host[:n].copy_(packed)  # one copy across; it waits for the device, so the bytes are there when written
    f.write(memoryview(host[:n].numpy()))
