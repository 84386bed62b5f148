"""The first update rehearsed while the model loads (issue 16: time from Start to the first update).

A run's first update pays, once, for what the GPU libraries build per new shape: cuDNN's execution
plan for each convolution (forward, and the gradients' two), its attention graph for each sequence
length, cuBLAS's choices. On an H200 that was 1.6-2.1 s of a 7-9 s start, spent after the 1-2 s of
loading the weights, when nothing else could run. Here a stand-in UNet of the run's architecture,
on uninitialised memory, makes one forward and backward pass at the run's batch shape, in the run's
layout, dtypes and settings, while a worker thread loads the real model. When the real first update
comes, the plans are built.

It runs in the calling (main) thread and the load in the worker, not the other way round: PyTorch
keeps cuDNN's convolution plans per thread (`thread_local` caches in ATen's Conv_v8.cpp: an
execution plan is not thread-safe across engines), so only plans built on the thread that trains
are found again. (The backward pass runs on autograd's own device thread either way.)

It changes nothing the run computes: no random number is drawn (the inputs are uninitialised
memory), the stand-in is a separate module, and its memory goes back to the caching allocator
before the real update. It runs only where that memory is to spare (REHEARSAL_MIN_FREE free on the
device) and only for a standalone run of our plain UNet (SD1.x/SD2.x), which the stand-in is.
"""
from __future__ import annotations

import threading
from typing import Callable, Optional

import torch

from .config import TrainConfig

REHEARSAL_MIN_FREE = 40 * 2 ** 30  # bytes free on the device: the stand-in and its pass need a few GB


class Rehearsal:
    """One forward and backward of a stand-in UNet at the run's shapes (see the module's doc)."""

    def __init__(self, unet: torch.nn.Module, batch: int, latent_hw, tokens: int, context_dim: int,
                 train_weights: bool, cfg: TrainConfig, device: torch.device):
        self.unet, self.batch, self.latent_hw, self.tokens = unet, batch, latent_hw, tokens
        self.context_dim, self.train_weights, self.cfg, self.device = context_dim, train_weights, cfg, device
        self.note = ""  # what happened, for the log

    @classmethod
    def for_run(cls, cfg: TrainConfig, data, device: torch.device) -> Optional["Rehearsal"]:
        """The rehearsal of `cfg`'s first update, or None where there is none to make: not on CUDA,
        compiled (compiling is its own warm-up), a model whose UNet is not the plain one, or a model
        config given (the file's own architecture is not read then)."""
        if device.type != "cuda" or cfg.compile or cfg.model_config or not data.train:
            return None
        return cls.of(cfg, data, device)

    @classmethod
    def of(cls, cfg: TrainConfig, data, device: torch.device) -> Optional["Rehearsal"]:
        """for_run without its conditions on the run (the tests rehearse on the CPU)."""
        from ..models.plain.blocks import uninitialised
        from ..models.plain.parts import unet_config_of
        from ..models.plain.unet import UNet2DConditionModel, per_block
        config = unet_config_of(cfg.model)
        if config is None:
            return None
        with uninitialised():  # here, before the load's thread starts: it patches torch.nn's classes
            unet = UNet2DConditionModel(config)
        buckets = [item.bucket for item in data.train]
        width, height = max(set(buckets), key=buckets.count)  # the shape most updates have
        context = per_block(unet.config.cross_attention_dim, len(unet.config.block_out_channels))[0]
        return cls(unet, cfg.batch_size, (height // 8, width // 8), 77, context, cfg.method == "dreambooth",
                   cfg, device)

    def beside(self, load: Callable[[], object]):
        """`load()` in a worker thread while this thread rehearses; load's result (or its exception)."""
        out = {}

        def work():
            try:
                out["result"] = load()
            except BaseException as e:  # noqa: BLE001 - handed to the caller's thread below
                out["error"] = e

        worker = threading.Thread(target=work, name="load the model", daemon=True)
        worker.start()
        autotune = torch.backends.cudnn.benchmark  # (the run sets its own value again later)
        try:
            self.note = self.rehearse()
        except Exception as e:  # noqa: BLE001 - only a head start: the run itself meets any real problem
            self.note = f"first update not rehearsed ({type(e).__name__}: {str(e)[:120]})"
        finally:
            self.unet = None
            torch.backends.cudnn.benchmark = autotune
            worker.join()
        if "error" in out:
            raise out["error"]
        return out["result"]

    def rehearse(self) -> str:
        from ..models.norms import norms_in
        from .loop import channels_last_for, cudnn_benchmark
        from .precision import compute_dtype
        cfg, dev = self.cfg, self.device
        cuda = dev.type == "cuda"
        free = torch.cuda.mem_get_info(dev)[0] if cuda else REHEARSAL_MIN_FREE
        if free < REHEARSAL_MIN_FREE:
            return f"first update not rehearsed ({free / 2 ** 30:.0f} GiB free: the run needs it)"
        torch.backends.cudnn.benchmark = cudnn_benchmark(cfg)  # the plans the run will ask for
        half = compute_dtype(cfg, dev, None) == torch.bfloat16
        dtype = torch.bfloat16 if half else torch.float32  # what the update computes in (autocast's)
        unet = self.unet.to(dtype).to_empty(device=dev)  # (.to on the meta device costs nothing)
        if channels_last_for(cfg):
            unet.to(memory_format=torch.channels_last)
        if half:
            norms_in(unet, torch.bfloat16)
        unet.set_gradient_checkpointing(cfg.gradient_checkpointing)
        unet.requires_grad_(self.train_weights)
        h, w = self.latent_hw
        # Dreambooth's gradients reach every weight; LoRA's and TI's flow back through the frozen UNet
        # to its input and its conditioning (a superset of the plans they need)
        x = torch.empty(self.batch, unet.config.in_channels, h, w, device=dev, dtype=dtype,
                        requires_grad=not self.train_weights)
        cond = torch.empty(self.batch, self.tokens, self.context_dim, device=dev, dtype=dtype,
                           requires_grad=not self.train_weights)
        t = torch.zeros(self.batch, dtype=torch.long, device=dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=half):
            out = unet(x, t, encoder_hidden_states=cond).sample
        out.float().mean().backward()
        if cuda:
            torch.cuda.synchronize(dev)
        del unet, x, cond, out
        return f"first update rehearsed on a stand-in UNet while the model loaded ({self.batch}x{h}x{w} latents)"
