"""What averaging a Dreambooth update's gradients costs on the wire: NCCL all-reduce of the
SD1.5 UNet's gradient size (859.5 M values) in bf16 and fp32, whole and in 100 MiB buckets.
Launch with one process per GPU:

  torchrun --nproc_per_node 2 bench/allreduce_bench.py
"""
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
from profile_step import timed  # noqa: E402

UNET_PARAMS = 859_520_964


def main() -> None:
    rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl")
    rows = []
    for dtype in (torch.bfloat16, torch.float32):
        flat = torch.ones(UNET_PARAMS, dtype=dtype, device="cuda")
        gib = flat.numel() * flat.element_size() / 2**30
        whole = timed(lambda flat=flat: dist.all_reduce(flat))
        per = (100 * 2**20) // flat.element_size()
        chunks = list(flat.split(per))
        bucketed = timed(lambda chunks=chunks: [dist.all_reduce(c) for c in chunks])
        rows.append({"dtype": str(dtype), "gib": round(gib, 3), "whole_ms": round(whole, 2),
                     "buckets": len(chunks), "bucketed_ms": round(bucketed, 2),
                     "bus_gb_per_s": round(2 * (dist.get_world_size() - 1) / dist.get_world_size() * gib * 1.0737
                                           / (whole / 1e3), 1)})
        del flat, chunks
    if rank == 0:
        print(json.dumps({"gpu": torch.cuda.get_device_name(), "world": dist.get_world_size(), "rows": rows}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
