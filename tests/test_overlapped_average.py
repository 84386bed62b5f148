"""The bucketed all-reduce that overlaps the backward pass (dist.OverlappedAverage), in two real
processes over gloo: with many small buckets, gradient accumulation and a parameter the update
does not use, every process ends with the average of both processes' gradients, exactly what one
all-reduce of everything after the backward pass gives."""
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model():
    torch.manual_seed(0)  # the same weights in both processes
    return torch.nn.ModuleDict({"a": torch.nn.Linear(8, 16), "b": torch.nn.Linear(16, 16),
                                "c": torch.nn.Linear(16, 4), "unused": torch.nn.Linear(4, 4),
                                # a channels-last convolution, as the UNet's on a GPU: its gradients are not
                                # contiguous in logical order
                                "conv": torch.nn.Conv2d(2, 3, 2).to(memory_format=torch.channels_last)})


def _grads(model, rank: int, reducer=None, device="cpu"):
    """Two micro-batches (GA 2) of rank-dependent data; the reducer armed on the last one only."""
    for m in range(2):
        g = torch.Generator().manual_seed(100 * rank + m)
        x = torch.randn(5, 8, generator=g).to(device)
        loss = model["c"](torch.tanh(model["b"](torch.tanh(model["a"](x))))).square().mean() / 2
        loss = loss + model["conv"](x.view(5, 2, 2, 2).contiguous(memory_format=torch.channels_last)).square().mean()
        if reducer is not None and m == 1:
            reducer.arm()
        loss.backward()
    if reducer is not None:
        reducer.finish()
    return {n: p.grad.cpu() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank: int, port: int, out, backend: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    import torch.distributed as dist
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        torch.backends.cudnn.allow_tf32 = False  # compared with fp32 sums on the CPU
    dist.init_process_group(backend, rank=rank, world_size=2)
    from sd_trainplan.train.dist import OverlappedAverage, Processes
    model = _model().to(device)
    reducer = OverlappedAverage(Processes(rank, 2, device), list(model.parameters()), bucket_mib=60 / 2**20)
    first = _grads(model, rank, reducer, device)
    # the first update taught the reducer the order gradients arrive in: the buckets are rebuilt, and
    # the parameter no update uses sits in the last bucket instead of holding back the first
    model.zero_grad(set_to_none=True)
    second = _grads(model, rank, reducer, device)
    unused_bucket = reducer.where[model["unused"].weight]
    out[rank] = {"buckets": len(reducer.buckets), "grads": first, "second": second,
                 "unused_last": unused_bucket == len(reducer.buckets) - 1}
    dist.destroy_process_group()


# gloo on CPUs (CI), NCCL on two GPUs (averages on the wire with AVG, on a side stream)
@pytest.mark.parametrize("backend", ["gloo", pytest.param("nccl", marks=pytest.mark.skipif(
    torch.cuda.device_count() < 2, reason="needs two CUDA GPUs"))])
def test_every_process_ends_with_the_average_of_all(backend):
    tol = dict(rtol=1e-6, atol=1e-7) if backend == "gloo" else dict(rtol=1e-5, atol=1e-6)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), out, backend), nprocs=2, join=True)
        got = dict(out)
    expected = {}
    for rank in (0, 1):
        for n, g in _grads(_model(), rank).items():
            expected[n] = expected.get(n, 0) + g / 2
    assert got[0]["buckets"] >= 4  # several buckets really were in play
    assert set(got[0]["grads"]) == set(expected)  # the unused layer has no gradient, and no hang
    for rank in (0, 1):
        assert got[rank]["unused_last"]
        for n, g in expected.items():
            torch.testing.assert_close(got[rank]["grads"][n], g, **tol)
            torch.testing.assert_close(got[rank]["second"][n], g, **tol)
    # and the two processes differed before averaging, so the test can tell
    assert not torch.allclose(_grads(_model(), 0)["a.weight"], _grads(_model(), 1)["a.weight"])
