"""From Start to a usable file (issue 16): the model loads straight in the dtypes training uses, the
export is written before the resumable checkpoint (which a big run keeps only when asked), resuming
stays exact, and the log says how long each phase took."""
import json
import subprocess
import sys

import pytest
import torch

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train

PHASES = ("start", "checks", "load", "encode", "setup", "warm-up", "training", "export", "checkpoint")


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    from sd_trainplan.models.tiny_diffusers import save_tiny_folder
    return save_tiny_folder(tmp_path_factory.mktemp("tiny") / "model", seed=3)


def file_tensors(path):
    from safetensors.torch import load_file
    return load_file(str(path))


def test_folder_loads_straight_in_the_dtypes_training_uses(tiny_folder, monkeypatch):
    from sd_trainplan.models.diffusers_adapter import _sd_classes

    def fallback(*args, **kwargs):
        raise AssertionError("a part of the plain layout fell back to from_pretrained")
    for cls in _sd_classes().values():  # no fallback
        monkeypatch.setattr(cls, "from_pretrained", classmethod(fallback))
    a = load_diffusers(str(tiny_folder), dtype=torch.bfloat16, masters=("unet",))
    unet = file_tensors(tiny_folder / "unet" / "diffusion_pytorch_model.safetensors")
    for k, v in a.unet().state_dict().items():  # Dreambooth's masters: the file's fp32 values, not bf16-rounded
        assert v.dtype == torch.float32 and torch.equal(v, unet[k]), k
    vae = file_tensors(tiny_folder / "vae" / "diffusion_pytorch_model.safetensors")
    for k, v in a.vae().state_dict().items():  # frozen parts in the compute dtype
        assert v.dtype == torch.bfloat16 and torch.equal(v, vae[k].to(torch.bfloat16)), k
    assert next(a.text_encoder().parameters()).dtype == torch.bfloat16


def test_direct_load_predicts_what_from_pretrained_loads(tiny_folder, tmp_path):
    """Same modules, same numbers: the direct path against diffusers/transformers' own loaders, which
    a folder in another layout (here the text encoder as a .bin) still goes through."""
    import shutil
    other = tmp_path / "other"
    shutil.copytree(tiny_folder, other)
    te = other / "text_encoder"
    torch.save(file_tensors(te / "model.safetensors"), te / "pytorch_model.bin")
    (te / "model.safetensors").unlink()
    direct, mixed = load_diffusers(str(tiny_folder)), load_diffusers(str(other))
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(2, 4, 8, 8, generator=g), torch.tensor([10, 900])
    with torch.no_grad():
        c1, c2 = direct.encode_prompts(["a photo of sks"] * 2), mixed.encode_prompts(["a photo of sks"] * 2)
        assert torch.equal(c1, c2)
        assert torch.equal(direct.predict(x, t, c1), mixed.predict(x, t, c2))
    px = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    assert torch.equal(direct.encode_images(px)[0], mixed.encode_images(px)[0])


def test_safetensors_writer_reads_back_with_the_library(tmp_path, monkeypatch):
    from safetensors import safe_open

    from sd_trainplan.train import safetensors_out
    monkeypatch.setattr(safetensors_out, "PIECE", 1000)  # several pieces, and tensors bigger than one
    g = torch.Generator().manual_seed(1)
    tensors = {"a.weight": torch.randn(40, 30, generator=g), "b": torch.randn(7, generator=g).to(torch.bfloat16),
               "steps": torch.arange(5), "scalar": torch.tensor(2.5), "empty": torch.zeros(0, 3),
               "mask": torch.tensor([True, False]), "c.bias": torch.randn(3, 2, generator=g)[:, 0]}  # not contiguous
    cast = lambda k, v: torch.float16 if "." in k else v.dtype  # noqa: E731
    path = tmp_path / "x.safetensors"
    safetensors_out.write_safetensors(str(path), tensors, {"step": "3"}, cast)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata() == {"step": "3"} and set(f.keys()) == set(tensors)
        for k, v in tensors.items():
            assert torch.equal(f.get_tensor(k), v.to(cast(k, v))), k


def run_events(cfg, **kw):
    events = []
    result = train(cfg, adapter=load_diffusers("tiny"), sinks=[events.append], **kw)
    return result, events


def test_log_shows_each_phase_and_the_export_comes_before_the_checkpoint(shapes_dir, tmp_path):
    cfg = TrainConfig(method="lora", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=3,
                      batch_size=2, token="zwx")
    result, events = run_events(cfg, started=0.0)  # 'started' long ago: the phase 'start' is counted
    text = [e.message for e in events]
    assert any(m.startswith("encoded 18 images in") for m in text)
    assert any(m.startswith("first update done") and "warm-up" in m for m in text)
    wrote = next(i for i, e in enumerate(events) if e.message.startswith(f"wrote {result.export_path.name} in"))
    saved = next(i for i, e in enumerate(events) if e.kind == "checkpoint")
    assert wrote < saved  # the file the user waits for first
    ckpt = result.run_dir / "checkpoints" / "step-000003.pt"
    assert result.export_path.stat().st_mtime_ns <= ckpt.stat().st_mtime_ns
    done = events[-1]
    assert done.kind == "done" and all(f"{p} " in done.message for p in PHASES if p != "start")
    timings = json.loads((result.run_dir / "timings.json").read_text())
    assert set(PHASES) <= set(timings["seconds"]) and timings["updates"] == 3
    assert result.timings == pytest.approx(timings["seconds"], abs=1e-3)


def test_cli_log_counts_the_imports(shapes_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "sd_trainplan", "train", "--data", str(shapes_dir), "--resolution",
                          "64", "--steps", "2", "--method", "ti", "--output", str(tmp_path)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    done = [line for line in out.stderr.splitlines() if line.startswith("done: ")][-1]
    start = float(done.split("times: start ")[1].split(" s")[0])
    assert start > 0.2  # Python and torch's import, before train() began


def test_cli_log_says_where_a_folders_load_went(tiny_folder, shapes_dir, tmp_path):
    """The weights (read before the model code is needed), the imports, building the parts, the
    tokenizer: the log says how long each took, and the run trains."""
    out = subprocess.run([sys.executable, "-m", "sd_trainplan", "train", "--model", str(tiny_folder), "--data",
                          str(shapes_dir), "--resolution", "64", "--steps", "2", "--method", "lora", "--output",
                          str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    loaded = next(line for line in out.stderr.splitlines() if line.startswith("prepare: loaded in"))
    assert loaded.index("weights") < loaded.index("imports") < loaded.index("build"), loaded


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_starting_the_gpu_early_draws_nothing_random_and_changes_no_setting():
    from sd_trainplan.train.gpu_start import start_gpu
    device = torch.device("cuda")
    torch.cuda.manual_seed(5)
    before, autotune = torch.cuda.get_rng_state(device), torch.backends.cudnn.benchmark
    start_gpu(device).join()
    assert torch.equal(torch.cuda.get_rng_state(device), before)  # the run's random numbers are the same
    assert torch.backends.cudnn.benchmark == autotune


def test_big_final_checkpoint_only_when_asked():
    from sd_trainplan.train.checkpoint import SMALL_STATE, keeps_final_checkpoint
    sd15_dreambooth = 10 * 2**30  # fp32 UNet + AdamW's two moments
    assert not keeps_final_checkpoint("auto", sd15_dreambooth)
    assert keeps_final_checkpoint("auto", 12 * 2**20) and keeps_final_checkpoint("auto", SMALL_STATE)
    assert keeps_final_checkpoint("on", sd15_dreambooth) and not keeps_final_checkpoint("off", 1)


def trained(run_dir, step):
    return torch.load(run_dir / "checkpoints" / f"step-{step:06d}.pt", weights_only=False)["trainable"]


def test_without_a_final_checkpoint_resume_continues_exactly_from_the_last_one(shapes_dir, tmp_path):
    """final_checkpoint = off (what 'auto' does for a big Dreambooth run): the export is written, no
    checkpoint after it; resuming for more updates continues from the last periodic checkpoint and
    ends where a straight run ends."""
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=4,
                      batch_size=2, lr=2e-3, flip=0.5, log_every=1, save_every=2, keep_last=5, token="zwx")
    short, events = run_events(cfg.replace(final_checkpoint="off"))
    assert short.export_path.is_file()
    assert sorted(p.name for p in (short.run_dir / "checkpoints").iterdir()) == ["step-000002.pt"]
    assert any(m.startswith("no resumable checkpoint at the end") for m in (e.message for e in events))
    more, events = run_events(cfg.replace(steps=6, final_checkpoint="on"), resume=str(short.run_dir))
    assert any(e.message.startswith("resumed at update 2") for e in events)
    straight, _ = run_events(cfg.replace(steps=6, final_checkpoint="on"))
    a, b = trained(straight.run_dir, 6), trained(more.run_dir, 6)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    losses = lambda r: [json.loads(x)["loss"] for x in (r.run_dir / "metrics.jsonl").read_text().splitlines()]  # noqa
    assert losses(more)[-4:] == losses(straight)[-4:]  # updates 3-6, trained again from the checkpoint


def test_resume_with_no_checkpoint_at_all_says_so_and_trains_from_the_start(shapes_dir, tmp_path):
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=2,
                      batch_size=2, lr=2e-3, token="zwx", final_checkpoint="off")
    first, _ = run_events(cfg)
    assert not list((first.run_dir / "checkpoints").iterdir())
    again, events = run_events(cfg.replace(steps=3, final_checkpoint="on"), resume=str(first.run_dir))
    assert any("has no checkpoint to continue from; training from update 0" in e.message for e in events)
    straight, _ = run_events(cfg.replace(steps=3, final_checkpoint="on"))
    a, b = trained(straight.run_dir, 3), trained(again.run_dir, 3)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_stop_saves_even_with_final_checkpoint_off(shapes_dir, tmp_path):
    cfg = TrainConfig(method="dreambooth", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=10,
                      batch_size=2, token="zwx", final_checkpoint="off")
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] >= 2

    result, _ = run_events(cfg, stop=stop)
    assert result.stopped and (result.run_dir / "checkpoints" / "step-000002.pt").is_file()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cudnn_autotuning_is_off_for_the_run_and_the_hosts_setting_comes_back(shapes_dir, tmp_path):
    seen = []
    torch.backends.cudnn.benchmark = True  # as a host may have set it
    cfg = TrainConfig(method="lora", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=2,
                      batch_size=2, token="zwx", device="cuda")
    train(cfg, adapter=load_diffusers("tiny", device="cuda"),
          sinks=[lambda e: seen.append(torch.backends.cudnn.benchmark) if e.kind == "step" else None])
    assert seen and not any(seen) and torch.backends.cudnn.benchmark
