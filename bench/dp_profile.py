"""Where a data-parallel update's GPU time goes: the main process's CUDA kernels over 5 updates of
our trainer (Dreambooth, SD1.5 size, 512 px, BS 4 per GPU) under torch.profiler, split into NCCL
kernels and the rest: compute kernel time, the time some kernel is running, NCCL time, how much of
NCCL's time overlaps compute, and the GPU span of the window. Run it with 1 process for the
baseline and with N:

  torchrun --nproc_per_node 1 bench/dp_profile.py ; torchrun --nproc_per_node 2 bench/dp_profile.py
"""
import json
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
from step_bench import build  # noqa: E402

from sd_trainplan.models.diffusers_adapter import DiffusersAdapter  # noqa: E402
from sd_trainplan.models.single_file import SCHEDULER  # noqa: E402
from sd_trainplan.train.config import TrainConfig  # noqa: E402
from sd_trainplan.train.dist import barrier, from_environment  # noqa: E402
from sd_trainplan.train.loop import train  # noqa: E402
from sd_trainplan.train.sample_data import make_shapes  # noqa: E402

ACTIVE = 5


def merged(intervals):
    out = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return out


def overlap(a, merged_b) -> float:
    return sum(max(0.0, min(e, be) - max(s, bs)) for s, e in a for bs, be in merged_b)


def main() -> None:
    procs = from_environment()
    device = procs.device or torch.device("cuda", 0)
    torch.cuda.set_device(device)
    data = Path(tempfile.gettempdir()) / "dp_profile_data"
    if procs.main and not data.exists():
        make_shapes(data, size=512, per_kind=1)
    barrier(procs)
    unet, vae, text, tok = build(False, device, torch.bfloat16)
    adapter = DiffusersAdapter(unet, vae, text, tok, SCHEDULER, device, unet.dtype, "random SD1.5")
    from torch.profiler import ProfilerActivity, profile, schedule
    prof = profile(activities=[ProfilerActivity.CUDA], schedule=schedule(wait=12, warmup=3, active=ACTIVE, repeat=1))

    def sink(ev):  # the main process's events only; one per update (log_every = 1)
        if ev.kind == "step" and ev.step:
            prof.step()

    cfg = TrainConfig(steps=24, log_every=1, keep_last=1, noise_scale=False, device=str(device), method="dreambooth",
                      data=str(data), output=tempfile.mkdtemp(), resolution=512, batch_size=4, lr=1e-6, token="sks")
    prof.start()
    train(cfg, adapter=adapter, sinks=[sink], export=False, procs=procs)
    prof.stop()
    if not procs.main:
        return
    kernels = [(e.time_range.start, e.time_range.end, e.name) for e in prof.events()
               if e.device_type.name == "CUDA" and e.time_range.end > e.time_range.start]
    nccl = [(s, e) for s, e, n in kernels if "nccl" in n.lower()]
    compute = [(s, e) for s, e, n in kernels if "nccl" not in n.lower()]
    busy = merged(compute)
    span = max(e for _, e, _ in kernels) - min(s for s, _, _ in kernels)
    per = 1e3 * ACTIVE  # us over 5 updates -> ms per update
    print(json.dumps({
        "world": procs.world, "gpu": torch.cuda.get_device_name(), "kernels": len(kernels),
        "ms_per_update": {"span": span / per, "compute_kernels": sum(e - s for s, e in compute) / per,
                          "compute_busy": sum(e - s for s, e in busy) / per,
                          "all_busy": sum(e - s for s, e in merged(compute + nccl)) / per,
                          "nccl_kernels": sum(e - s for s, e in nccl) / per,
                          "nccl_overlapping_compute": overlap(merged(nccl), busy) / per},
        "nccl_launches_per_update": len(nccl) / ACTIVE,
        "top_kernels_ms_per_update": top_kernels(kernels, per)}))


def top_kernels(kernels, per: float, n: int = 12) -> list:
    """The kernel names that take the most time (name cut to 70 characters), with launch counts:
    diff the 1- and N-process lists to see what data parallelism adds."""
    total: dict = {}
    for s, e, name in kernels:
        t, c = total.get(name[:70], (0.0, 0))
        total[name[:70]] = (t + e - s, c + 1)
    best = sorted(total.items(), key=lambda kv: -kv[1][0])[:n]
    return [[name, round(t / per, 2), c // ACTIVE] for name, (t, c) in best]


if __name__ == "__main__":
    main()
