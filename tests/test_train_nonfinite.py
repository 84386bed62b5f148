"""A run whose loss or weights go NaN/inf stops there, says what to try, keeps the last good
checkpoint and writes nothing non-finite; the page, the CLI and the LR range test each show it
(issue 17, item 3)."""
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.finite import NonFiniteLoss
from sd_trainplan.train.loop import train
from sd_trainplan.ui.hooks import UiHooks
from sd_trainplan.ui.job_view import progress_html, result_html
from sd_trainplan.ui.jobs import TRAIN, JobRunner

# six sane updates, then an LR that blows the weights up: the loss is NaN a few updates later
BLOW_UP = "1e-3:6, 1e3:12"


def finite_file(path) -> bool:
    state = torch.load(path, weights_only=False)["trainable"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_a_nan_run_on_the_page_fails_with_advice_and_keeps_the_last_good_checkpoint(shapes_dir, tmp_path, capsys):
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=12,
                      batch_size=2, scheduler=BLOW_UP, lr=1e-3, save_every=3, keep_last=5, log_every=2, name="db")
    runner = JobRunner(UiHooks())
    job = runner.start(TRAIN, cfg, lambda adapter, sinks, stop: train(cfg, adapter=load_diffusers("tiny"),
                                                                        sinks=sinks, stop=stop))
    runner.thread.join(120)
    assert job.status == "error", (job.status, job.error)
    assert job.error.startswith("Stopped: the training loss became nan between updates")
    assert "a lower learning rate" in job.error and "step-000006.pt (update 6)" in job.error
    assert "The run failed." in result_html(job) and "step-000006.pt" in result_html(job)
    assert 'data-state="error"' in progress_html(job) and "failed" in progress_html(job)
    assert not any(ev.kind == "done" for ev in job.events)
    run = next(tmp_path.glob("db-*"))
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.pt"))
    assert ckpts == ["step-000003.pt", "step-000006.pt"]  # nothing saved after the LR jump
    assert all(finite_file(p) for p in (run / "checkpoints").glob("*.pt"))
    assert not list(run.glob("*.safetensors"))  # no export
    losses = [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert losses and all(math.isfinite(x) for x in losses)  # the NaN interval is not logged as a number
    assert "Traceback" not in capsys.readouterr().err  # a message for the user, not a crash


def test_weights_that_went_non_finite_are_never_exported(shapes_dir, tmp_path):
    adapter = load_diffusers("tiny")
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=4,
                      batch_size=2, lr=1e-3, log_every=2, name="db")
    box = {}

    def break_last_update(ev):  # as an update that overflowed after its (finite) loss was taken
        if ev.kind == "start":
            box["run"] = Path(ev.message.rsplit("-> ", 1)[1])
        if ev.kind == "step" and ev.step == 4:
            with torch.no_grad():
                next(adapter.unet().parameters()).view(-1)[0] = float("inf")  # Dreambooth trains the UNet
    with pytest.raises(NonFiniteLoss, match="the trained weights became non-finite .*at update 4 of 4"):
        train(cfg, adapter=adapter, sinks=[break_last_update])
    assert not list(box["run"].glob("*.safetensors")) and not list((box["run"] / "checkpoints").glob("*.pt"))


def test_the_cli_stops_with_the_message_and_its_own_exit_code(shapes_dir, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "sd_trainplan", "train", "--method", "lora", "--data", str(shapes_dir),
                           "--output", str(tmp_path), "--resolution", "64", "--steps", "8", "--batch-size", "2",
                           "--lr", "1e6", "--log-every", "4", "--max-grad-norm", "0"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 4, proc.stderr[-2000:]
    assert "error: Stopped: the training loss became nan between updates 1 and 4 of 8" in proc.stderr
    assert "try 100000" in proc.stderr and "gradient clipping" in proc.stderr and "Traceback" not in proc.stderr


def test_an_lr_range_sweep_that_goes_nan_has_diverged_and_writes_only_numbers(shapes_dir, tmp_path):
    from sd_trainplan.train.lr_range import lr_range_test
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, batch_size=2,
                      val_split=0.2, name="sweep")
    t0 = time.time()
    result = lr_range_test(cfg, max_lr=1e4, steps=30, adapter=load_diffusers("tiny"))
    assert result.diverged and result.steps < 30 and time.time() - t0 < 120
    text = open(result.json_path).read()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in lr_range.json"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_on_a_gpu_the_fast_path_and_loss_scaling_stop_on_nan_too(shapes_dir, tmp_path, precision):
    """The CUDA-graph fast path (bf16: no host sync between log steps) and fp16 with loss scaling
    (eager, the GradScaler skipping inf steps): the same stop, the same kept checkpoint, no export."""
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path / precision), resolution=64,
                      steps=12, batch_size=2, scheduler=BLOW_UP, lr=1e-3, save_every=3, keep_last=5, log_every=2,
                      name="db", device="cuda", precision=precision, noise_scale=False)
    events = []
    with pytest.raises(NonFiniteLoss) as e:
        train(cfg, adapter=load_diffusers("tiny", device="cuda"), sinks=[events.append])
    assert "became" in str(e.value) and "step-000006.pt (update 6)" in str(e.value)
    if precision == "bf16":  # the graphs were on: no "CUDA graphs off" note
        assert not any("CUDA graphs off" in (ev.message or "") for ev in events)
    run = next((tmp_path / precision).glob("db-*"))
    assert all(finite_file(p) for p in (run / "checkpoints").glob("*.pt"))
    assert not list(run.glob("*.safetensors"))
