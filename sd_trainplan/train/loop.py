"""The training loop: Dreambooth, Textual Inversion and LoRA over one ModelAdapter.

Reads top to bottom: check everything, load the model, put the data on the device, build the
optimizer and schedule, then one loop over weight updates. A micro-batch's samples, noise,
timesteps and augmentations are keyed by global sample index (see batches.py, keyed_rng.py),
so the step is a function of tensors with no host synchronisation except at log intervals.
"""
from __future__ import annotations

import time
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

import torch

from ..models import triton_gate
from ..plan.schedule import lr_at
from . import bf16_weights
from .batches import UpdateOrder
from .checkpoint import (keeps_final_checkpoint, latest_checkpoint, load_checkpoint, log_metrics, new_run_dir,
                         save_checkpoint, state_bytes, write_config)
from .config import ConfigError, TrainConfig, check_config, lr_schedule
from .offload import park_frozen_parts, unet_parked
from .precision import autocast_for, compute_dtype
from .data import Dataset, DataError, load_dataset
from .dist import OverlappedAverage, Processes, any_true, barrier, broadcast, reduce_mean
from .events import Emitter, Sink
from .finite import FiniteGuard
from .images import to_pil
from .gpu_start import half_dtype, start_gpu, triton_kernels
from .latent_cache import encode_items
from .methods import make_method, trained_in_fp32
from .noise_scale import GradProbe, NoiseScale
from .cuda_graph import GraphedUpdate, why_not
from .optim import build_optimizer, set_lr
from .phases import Phases
from .step import StepMath, optimizer_update
from .prior import PriorPreservation
from .prompts import Prompts, fixed_prompts
from .sampling import ddim_sample
from .validation import fixed_grid_loss, stable_subset


@dataclass
class RunResult:
    run_dir: Path
    steps_done: int
    export_path: Optional[Path]
    stopped: bool
    last_loss: Optional[float]
    val_loss: Optional[float]
    timings: Optional[dict] = None   # seconds per phase (phases.py)


def prepare_checks(cfg: TrainConfig, world: int = 1, check_model: bool = True) -> Dataset:
    """Every check that needs no model: config fields, the model path (unless the caller brings
    the model, as the WebUI does), the dataset. All problems are reported together, each naming
    its field or file."""
    problems = check_config(cfg)
    from ..models.load import RANDOM
    path = Path(cfg.model).expanduser()
    if check_model and cfg.model not in ("tiny",) + RANDOM and not path.exists():
        problems.append(f"model: {cfg.model} does not exist (give 'tiny', a diffusers folder or a .safetensors file)")
    elif check_model and path.is_dir():
        from ..models.sdxl_diffusers import is_sdxl_folder, folder_problems
        problems += folder_problems(path) if is_sdxl_folder(path) else []
    try:
        triton_gate.asked()  # the environment's SD_TRAINPLAN_TRITON, read again at each norm
    except ValueError as e:
        problems.append(str(e))
    if cfg.optimizer == "adamw8bit" and importlib.util.find_spec("bitsandbytes") is None:
        problems.append("optimizer: adamw8bit needs the bitsandbytes package, which is not installed; install it"
                        " yourself (pip install bitsandbytes) or use adamw")
    data = None
    if cfg.data.strip():
        try:
            data = load_dataset(cfg.data, cfg.resolution, cfg.buckets, cfg.skip_bad_images, cfg.val_split, cfg.seed,
                                [c.data for c in cfg.concepts])
        except DataError as e:
            problems += e.problems
    if data is not None and cfg.batch_size * world > len(data.train) * cfg.repeats:
        problems.append(f"batch_size: {cfg.batch_size} x {world} process(es) is more than the"
                        f" {len(data.train) * cfg.repeats} training images")
    if problems:
        raise ConfigError(problems)
    return data


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError([f"device: {name} requested but no CUDA GPU is available"])
    return torch.device(name)


def train(cfg: TrainConfig, adapter=None, sinks: Iterable[Sink] = (), stop: Callable[[], bool] = lambda: False,
          resume: Optional[str] = None, procs: Processes = Processes(), export: bool = True,
          graph_capture: bool = True, started: Optional[float] = None) -> RunResult:
    """Run `cfg`. `export=False` (the LR range test: a probe) writes no result file and keeps no
    checkpoint at the end or on a stop. `graph_capture=False` runs the fast path's code without
    recording CUDA graphs, on any device (to check it against eager mode). `started`: the process's
    start (time.monotonic()), when known, so the log counts the imports too."""
    emit = Emitter(list(sinks) if procs.main else [])
    phases = Phases(started=started)
    # ---- 1. check everything before any model work -------------------------------------------
    data = prepare_checks(cfg, procs.world, check_model=adapter is None)
    device = adapter.device if adapter is not None else (procs.device or pick_device(cfg.device))
    phases.device = device
    starting = None
    if adapter is None and device.type == "cuda":  # the GPU starts while the model code is imported
        starting = start_gpu(device)
    run_dir = Path(resume) if resume else (new_run_dir(cfg) if procs.main else None)
    run_dir = Path(broadcast(procs, str(run_dir)))
    if procs.main:
        write_config(run_dir, cfg)
    phases.lap("checks")
    emit("start", total=cfg.steps, message=f"{cfg.method} on {len(data.train)} images"
         f" ({len(data.val)} held out) -> {run_dir}")

    # ---- 2. the model and what the method trains ----------------------------------------------
    loaded = adapter is None
    if loaded:
        from ..models.load import load_model
        emit("prepare", message=f"loading model {cfg.model}")
        # straight onto the device: frozen parts in bf16 on a GPU (fp32 on a CPU), what the method trains
        # in fp32 from the file's own values (its masters). Dreambooth writes the whole model back, so its
        # frozen parts load in fp32 too and keep the file's exact values (bf16 would round them); they
        # encode the images and prompts once, so this costs memory (~0.3 GB at SD1.5 size), not time.
        dtype = torch.bfloat16 if device.type == "cuda" and cfg.precision in ("auto", "bf16") \
            and cfg.method != "dreambooth" else torch.float32
        adapter = load_model(cfg.model, device, dtype=dtype, seed=cfg.seed, config=cfg.model_config or None,
                             masters=trained_in_fp32(cfg))
    method = make_method(adapter, cfg)
    took = phases.lap("load")
    if loaded:
        parts = getattr(adapter, "load_seconds", {})  # where a load says where its time went
        detail = f" ({', '.join(f'{k} {v:.1f} s' for k, v in parts.items())})" if parts else ""
        emit("prepare", message=f"loaded in {took:.1f} s{detail}: {adapter.describe()}")
    if cfg.gradient_checkpointing:
        adapter.set_gradient_checkpointing(True)
    autotune = torch.backends.cudnn.benchmark  # a process-wide switch: the host's own value comes back after
    undo = []  # what _run moved off the GPU (offload.py), put back however it ends
    if starting is not None:
        starting.join()  # done by now, as a rule; no other thread may call CUDA while a graph is captured
    problem = triton_kernels(device, half_dtype(device))  # the start thread's proof, or here where none ran
    if problem:
        emit("prepare", message=f"our Triton kernels (GroupNorm, GEGLU, AdamW) are off: {problem}; training with"
             " PyTorch's (SD_TRAINPLAN_TRITON=off says the same without trying)")
    try:
        return _run(cfg, adapter, method, data, run_dir, emit, stop, resume, procs, export, graph_capture, phases, undo)
    finally:
        for restore in undo:
            restore()
        torch.backends.cudnn.benchmark = autotune
        method.close()
        if cfg.gradient_checkpointing:
            adapter.set_gradient_checkpointing(False)


def _run(cfg, adapter, method, data, run_dir, emit, stop, resume, procs, export, graph_capture, phases,
         undo) -> RunResult:
    device = adapter.device
    # ---- 3. data on the device: latents once, prompts, prior-preservation images --------------
    emit("prepare", message=f"encoding {len(data.train) + len(data.val)} images")
    name = method.prompt_name()
    prompts = Prompts(cfg, data.train, name, method.fresh_text)
    with unet_parked(cfg, adapter):  # low VRAM: the UNet waits on the CPU meanwhile (offload.py)
        latents = encode_items(adapter, data.train, with_flip=cfg.flip > 0)
        val_latents = encode_items(adapter, data.val, with_flip=False) if data.val else {}
        prompts.build_cache(adapter)
    val_prompts = fixed_prompts(cfg, data.val, name)
    train_prompts = fixed_prompts(cfg, data.train, name)
    stable = stable_subset(len(data.train), cfg.seed)
    prior = None
    if cfg.method == "dreambooth" and cfg.num_class_images:
        if procs.main:  # one process generates the missing class images; the others wait, then read them
            PriorPreservation.generate(cfg, adapter, run_dir, emit)
        barrier(procs)
        prior = PriorPreservation.build(cfg, adapter, run_dir)
    emit("prepare", message=f"encoded {len(data.train) + len(data.val)} images in {phases.lap('encode'):.1f} s")

    eb = cfg.batch_size * cfg.grad_accum * procs.world
    order = UpdateOrder({b: len(bl.items) for b, bl in latents.items()}, cfg.repeats, eb, cfg.seed)

    # ---- 4. optimizer, LR schedule, mixed precision, resume ----------------------------------
    params = method.param_groups()
    trainable = [p for g in params for p in g["params"]]
    opt = build_optimizer(cfg.optimizer, params, cfg.lr, cfg.weight_decay, device)
    schedule = lr_schedule(cfg)
    autocast, scaler = autocast_for(cfg, device, getattr(adapter, "dtype", torch.float32))
    start = 0
    if resume:
        found = latest_checkpoint(run_dir)
        if found:
            start, note = load_checkpoint(found[1], method, opt, scaler, eb)
            emit("prepare", step=start, total=cfg.steps, message=f"resumed at update {start} from {found[1].name}"
                 + note)
        else:  # e.g. a finished run that kept no final checkpoint: the same result, from the start
            emit("prepare", message=f"resume: {run_dir} has no checkpoint to continue from; training from update 0")

    if device.type == "cuda":
        # shapes are static per bucket: time the convolutions' algorithms once per shape, or (off) take
        # cuDNN's heuristic choice and skip that warm-up
        torch.backends.cudnn.benchmark = cudnn_benchmark(cfg)
        nhwc = cfg.channels_last == "on" or (cfg.channels_last == "auto" and cfg.batch_size <= 8)
        if hasattr(adapter, "use_channels_last") and nhwc:
            adapter.use_channels_last()  # auto: measured faster at BS 1-4 on an H100, slower at 16
        if hasattr(adapter, "use_norms_in") and compute_dtype(cfg, device, adapter) == torch.bfloat16:
            adapter.use_norms_in(torch.bfloat16)  # no fp32 round trips around every norm (models/norms.py)
    if cfg.compile:
        if device.type == "cuda" and hasattr(adapter, "use_compile"):
            adapter.use_compile()
            emit("prepare", message="compiling the UNet (torch.compile) on the first update of each batch shape:"
                 " this takes minutes, then every update is faster")
        else:
            emit("prepare", message="compile: only a standalone model on a CUDA device is compiled; training"
                 " uncompiled")
    step = StepMath(cfg, adapter, latents, prompts, prior, order, procs, autocast)
    running = torch.zeros((), device=device)
    reducer = OverlappedAverage(procs, trainable, step.reduce_dtype)
    graphed = _try_graphs(cfg, adapter, step, scaler, opt, trainable, running, reducer, emit, graph_capture)
    phases.lap("setup")
    guard = FiniteGuard(cfg, method, run_dir, compute_dtype(cfg, device, adapter))  # NaN/inf: stop, write nothing

    def validate(step: int):
        # the processes split the scoring between them (and sum), so P processes validate P times faster
        val = fixed_grid_loss(adapter, val_latents, val_prompts, cfg.seed, cfg.val_timesteps, procs=procs) \
            if val_latents else None
        stab = fixed_grid_loss(adapter, latents, train_prompts, cfg.seed, cfg.val_timesteps, stable, procs=procs)
        emit("val", step=step, total=cfg.steps, val_loss=val, stable_loss=stab)
        return val, stab

    noise = NoiseScale(cfg.batch_size, eb) if cfg.noise_scale and eb > cfg.batch_size else None
    restore = park_frozen_parts(cfg, adapter, prompts.cacheable, prior)  # low VRAM: only the UNet on the GPU
    if restore is not None:
        undo.append(restore)
        emit("prepare", message="low VRAM: the text encoders and the VAE wait on the CPU while the UNet trains"
             " (the prompts' conditioning and the latents are cached)")

    # ---- 5. the loop over weight updates ------------------------------------------------------
    last_loss, val_loss, stopped = None, None, False
    logged_from = start
    emit("step", step=start, total=cfg.steps, message="training")
    if cfg.val_every and start == 0:  # the baseline, so the curve shows where training started
        v0, s0 = validate(0)
        if procs.main:
            log_metrics(run_dir, {"step": 0, "images_seen": 0, "val_loss": v0, "stable_loss": s0})
        phases.lap("validation")
    for u in range(start, cfg.steps):
        lr = lr_at(schedule, u)
        measure = noise is not None and (u + 1) % cfg.log_every == 0
        fast = graphed is not None and not measure
        if fast:  # the fast path: replay the recorded update
            graphed.set_lr(lr)
            try:
                graphed.run(u)
            except RuntimeError as e:  # recording failed: finish the run eagerly, from this update
                graphed.release()
                graphed, fast = None, False
                emit("prepare", step=u, message=f"CUDA graphs off: recording failed ({str(e)[:160]}); training"
                     " eagerly")
        if not fast:
            set_lr(opt, lr) if graphed is None else graphed.set_lr(lr)
            probe = GradProbe(trainable, cfg.grad_accum) if measure else None
            for m in range(cfg.grad_accum):
                loss = step.eager_micro(u, m) / cfg.grad_accum
                if m == cfg.grad_accum - 1:
                    reducer.arm()  # the last backward all-reduces the gradients in buckets as they fill
                (scaler.scale(loss) if scaler is not None else loss).backward()
                running += loss.detach()
                if probe:  # reads this process's own gradients: the averages are written back at finish()
                    probe.after_micro()
            reducer.finish()
            if probe:
                noise.update(reduce_mean(procs, probe.small_sq()), probe.big_sq())
            optimizer_update(opt, trainable, cfg.max_grad_norm, scaler)
        done = u + 1
        if u == start:  # the first update carries the warm-up: autotuning, the graph's capture
            took = phases.lap("warm-up")
            emit("prepare", step=done, total=cfg.steps, message=f"first update done {phases.since_start():.1f} s"
                 f" after the start (its warm-up: {took:.2f} s)")

        if done % cfg.log_every == 0 or done == cfg.steps:  # the only host sync in the loop
            last_loss = reduce_mean(procs, running.item() / (done - logged_from))
            guard.loss(last_loss, logged_from + 1, done)
            running.zero_()
            logged_from = done
            record = {"step": done, "images_seen": done * eb, "loss": last_loss, "lr": lr,
                      "elapsed_s": round(time.monotonic() - emit.t0, 3)}
            if noise is not None and noise.b_simple is not None:
                record["b_simple"] = noise.b_simple
            if cfg.val_every and (done % cfg.val_every == 0 or done == cfg.steps):
                val_loss, stab = validate(done)
                record.update(val_loss=val_loss, stable_loss=stab)
            if procs.main:
                log_metrics(run_dir, record)
            emit("step", step=done, total=cfg.steps, loss=last_loss, lr=lr, images_seen=done * eb,
                 val_loss=record.get("val_loss"), stable_loss=record.get("stable_loss"),
                 extra={"b_simple": record["b_simple"]} if "b_simple" in record else {})
        if procs.main and cfg.sample_every and done % cfg.sample_every == 0:
            _sample(cfg, adapter, name, run_dir, done, emit)
        if cfg.save_every and done % cfg.save_every == 0 and done < cfg.steps and guard.weights(done, logged_from):
            if procs.main:
                path = save_checkpoint(run_dir, done, method, opt, scaler, cfg.keep_last, eb)
                emit("checkpoint", step=done, total=cfg.steps, path=str(path), message=f"saved {path.name}")
        # several processes agree on a Stop at log steps only: agreeing is a collective that waits for
        # the GPU, and waiting every update would leave the GPU idle while the host prepares the next
        check = procs.world == 1 or done % cfg.log_every == 0
        if check and any_true(procs, stop()) and done < cfg.steps:
            stopped = True
            if export and guard.weights(done, logged_from) and procs.main:
                path = save_checkpoint(run_dir, done, method, opt, scaler, cfg.keep_last, eb)
                emit("stopped", step=done, total=cfg.steps, path=str(path),
                     message=f"stopped at update {done}; resume with --resume {run_dir}")
            return RunResult(run_dir, done, None, True, last_loss, val_loss)

    phases.lap("training")
    for back in undo:  # the final validation and the export may need them
        back()
    # ---- 6. export first (the file the user waits for), then the resumable checkpoint --------
    if cfg.val_every == 0 and val_latents:
        val_loss, _ = validate(cfg.steps)
        phases.lap("validation")
    path = None
    if export and guard.weights(cfg.steps, logged_from) and procs.main:
        emit("prepare", step=cfg.steps, total=cfg.steps, message="writing the export")
        path = method.export(run_dir, cfg.steps)
        emit("prepare", step=cfg.steps, total=cfg.steps, path=str(path),
             message=f"wrote {path.name} in {phases.lap('export'):.1f} s")
        nbytes = state_bytes(method, opt)
        if keeps_final_checkpoint(cfg.final_checkpoint, nbytes):
            ckpt = save_checkpoint(run_dir, cfg.steps, method, opt, scaler, cfg.keep_last, eb)
            emit("checkpoint", step=cfg.steps, total=cfg.steps, path=str(ckpt),
                 message=f"saved {ckpt.name} ({nbytes / 2**30:.2f} GiB) in {phases.lap('checkpoint'):.1f} s")
        else:
            emit("prepare", step=cfg.steps, total=cfg.steps, message=(
                f"no resumable checkpoint at the end ({nbytes / 2**30:.1f} GiB of trained weights and optimizer"
                " state; final_checkpoint = on keeps one; Stop and save_every always do)"))
        phases.write(run_dir, updates=cfg.steps - start,  # training: all but the first (warm-up)
                     load_parts=getattr(adapter, "load_seconds", None))
        emit("done", step=cfg.steps, total=cfg.steps, path=str(path), loss=last_loss, val_loss=val_loss,
             message=f"wrote {path} (times: {phases.summary(cfg.steps - start - 1)})")
    return RunResult(run_dir, cfg.steps, path, stopped, last_loss, val_loss, dict(phases.seconds))


def cudnn_benchmark(cfg: TrainConfig) -> bool:
    """cuDNN autotuning: 'auto' is off. Measured on an H200 (docs/PERFORMANCE.md, issue 16): it cost
    5-37 s of warm-up per run (timing every convolution's algorithms for each new shape) and gained
    nothing in the steady state (Dreambooth BS 1: 37.97 against 37.71 ms/update; LoRA BS 4: 46.04
    against 45.88), since the bf16 channels-last convolutions cuDNN's heuristics pick are the fast ones."""
    return cfg.cudnn_benchmark == "on"


def _try_graphs(cfg, adapter, step, scaler, opt, trainable, running, reducer, emit, capture=True):
    """The CUDA-graph fast path when it can work, else None (and a log line saying why)."""
    reason = why_not(cfg, adapter, step, scaler, opt, step.procs.world, capture)
    if reason is None:
        try:
            bf16 = bf16_weights.applies(cfg, compute_dtype(cfg, adapter.device, adapter), step.procs.world,
                                        adapter.device)
            # the UNet's weights only: a trained text encoder runs outside autocast, in its fp32 weights
            return GraphedUpdate(step, opt, trainable, cfg.max_grad_norm, cfg.grad_accum, running, reducer, capture,
                                 [adapter.unet()] if bf16 else None)
        except Exception as e:  # noqa: BLE001 - any failure to set up means: run eagerly
            reason = f"setting it up failed ({type(e).__name__}: {e})"
    if adapter.device.type == "cuda":
        emit("prepare", message=f"CUDA graphs off: {reason}; training eagerly")
    return None


def _sample(cfg, adapter, name, run_dir, step, emit) -> None:
    from .atomic import atomic_write
    prompt = (cfg.sample_prompt or cfg.instance_prompt).replace("[name]", name).replace("[filewords]", "")
    res = cfg.resolution
    img = to_pil(ddim_sample(adapter, [prompt], (res, res), cfg.sample_seed, cfg.sample_steps, cfg.sample_cfg)[0])
    path = atomic_write(Path(run_dir) / "samples" / f"step-{step:06d}.png", lambda tmp: img.save(tmp, format="PNG"))
    emit("sample", step=step, total=cfg.steps, path=str(path), message=prompt, extra={"image": img})


# ---- data-parallel helpers (no-ops on one process) -----------------------------------------