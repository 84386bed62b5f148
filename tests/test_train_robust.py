"""Nothing lost on a Stop or a crash, and bad input named before any model work."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from sd_trainplan.models.diffusers_adapter import load_diffusers
from sd_trainplan.train.config import TrainConfig
from sd_trainplan.train.loop import train

CLI = [sys.executable, "-m", "sd_trainplan", "train"]


def trained_state(result_dir: Path):
    from sd_trainplan.train.checkpoint import latest_checkpoint
    step, path = latest_checkpoint(result_dir)
    return step, torch.load(path, weights_only=False)


@pytest.mark.parametrize("method", ["dreambooth", "ti", "lora"])
def test_stop_and_resume_equals_an_uninterrupted_run(shapes_dir, tmp_path, method):
    cfg = TrainConfig(method=method, data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=8,
                      batch_size=2, grad_accum=2, lr=3e-3, scheduler="cosine", warmup=2, flip=0.5, log_every=1,
                      token="zwx", train_text_encoder=method == "lora")
    straight = train(cfg, adapter=load_diffusers("tiny"))

    calls = {"n": 0}

    def stop_after_3():
        calls["n"] += 1
        return calls["n"] >= 3

    events = []
    stopped = train(cfg, adapter=load_diffusers("tiny"), stop=stop_after_3, sinks=[events.append])
    assert stopped.stopped and stopped.steps_done == 3 and stopped.export_path is None
    assert any(e.kind == "stopped" and "--resume" in e.message for e in events)
    resumed = train(cfg, adapter=load_diffusers("tiny"), resume=str(stopped.run_dir))
    assert resumed.steps_done == 8

    (s1, a), (s2, b) = trained_state(straight.run_dir), trained_state(resumed.run_dir)
    assert s1 == s2 == 8
    for k in a["trainable"]:
        assert torch.equal(a["trainable"][k], b["trainable"][k]), k
    lines = [json.loads(x) for x in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(1, 9))  # one record per update, none lost or doubled
    straight_losses = [json.loads(x)["loss"] for x in (straight.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["loss"] for x in lines] == straight_losses


def test_resume_a_finished_run_for_more_steps(shapes_dir, tmp_path):
    cfg = TrainConfig(method="ti", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=3, batch_size=2,
                      token="zwx")
    first = train(cfg, adapter=load_diffusers("tiny"))
    more = train(cfg.replace(steps=5), adapter=load_diffusers("tiny"), resume=str(first.run_dir))
    assert more.steps_done == 5 and more.export_path.name == "run-1.safetensors"  # the first export is kept


WRITER = r"""
import sys, torch
from pathlib import Path
from sd_trainplan.train.methods import save_safetensors
target = Path(sys.argv[1])
big = {"w": torch.randn(4096, 4096)}  # 64 MiB per write
print("ready", flush=True)
while True:
    p = save_safetensors(target, big, {})
    p.unlink()
"""


def test_sigkill_mid_save_leaves_no_partial_file(tmp_path):
    target = tmp_path / "out.safetensors"
    for delay in (0.3, 0.7, 1.1):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        finals = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
        for p in finals:  # whatever carries a final name is complete and loadable
            from safetensors.torch import load_file
            assert load_file(p)["w"].shape == (4096, 4096)
            p.unlink()
        for p in tmp_path.glob(".*.tmp"):
            p.unlink()


def cli(*args, cwd=None):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, cwd=cwd)


def test_bad_inputs_are_named_before_any_model_work(tmp_path):
    from PIL import Image
    data = tmp_path / "data"
    data.mkdir()
    Image.new("RGB", (64, 64), "red").save(data / "good.png")
    Image.new("RGB", (16, 16), "red").save(data / "tiny.png")
    (data / "broken.png").write_bytes(Image.new("RGB", (64, 64)).tobytes()[:100])
    (data / "orphan.txt").write_text("a caption with no image")
    out = cli("--data", str(data), "--resolution", "64", "--steps", "-3", "--model", str(tmp_path / "missing"),
              "--output", str(tmp_path / "runs"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    err = out.stderr
    assert "--steps: must be >= 1" in err
    assert f"--model: {tmp_path / 'missing'} does not exist" in err
    assert "orphan.txt has no image" in err
    assert "tiny.png is 16x16" in err
    assert "broken.png cannot be read" in err and "skip_bad_images" in err
    assert not (tmp_path / "runs").exists()  # nothing started


def test_skip_bad_images_when_allowed(tmp_path):
    from PIL import Image
    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        Image.new("RGB", (64, 64), (i * 90, 10, 10)).save(data / f"ok{i}.png")
    (data / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = cli("--data", str(data), "--resolution", "64", "--steps", "1", "--skip-bad-images", "--method", "ti",
              "--output", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_file()


def test_empty_folder_and_unknown_setting(tmp_path):
    (tmp_path / "empty").mkdir()
    out = cli("--data", str(tmp_path / "empty"))
    assert out.returncode == 2 and "has no images" in out.stderr
    cfg = tmp_path / "run.toml"
    cfg.write_text('data = "x"\nlearning_rate = 1\n')
    out = cli("--config", str(cfg))
    assert out.returncode == 2 and "--learning-rate: not a training setting" in out.stderr


def test_cli_flags_alone_run_and_ctrl_c_saves(shapes_dir, tmp_path):
    proc = subprocess.Popen(CLI + ["--data", str(shapes_dir), "--resolution", "64", "--steps", "100000",
                                   "--method", "lora", "--output", str(tmp_path), "--log-every", "1"],
                            stderr=subprocess.PIPE, text=True)
    buf = ""
    while "1/100000" not in buf:  # wait until training is under way
        ch = proc.stderr.read(1)
        assert ch, buf
        buf += ch
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    assert proc.returncode == 3, rest
    assert "--resume" in rest
    run_dir = next(tmp_path.iterdir())
    assert list((run_dir / "checkpoints").glob("step-*.pt"))
    assert (run_dir / "config.toml").is_file()


def test_config_toml_round_trip(tmp_path):
    from sd_trainplan.train.config import Concept, config_from_dict, read_toml, to_toml
    cfg = TrainConfig(method="lora", data="a \"quoted\" path", rank=8, lr=1.5e-4, flip=0.5, train_text_encoder=True,
                      concepts=(Concept("b", "zwx [filewords]", "a dog", "c"),))
    assert config_from_dict(read_toml(to_toml(cfg))) == cfg


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600)])
def test_written_files_get_the_mode_the_umask_gives(shapes_dir, tmp_path, umask, mode):
    """Exports, checkpoints, configs and samples are readable as the user's other files are (0644 under
    the usual umask 022), not the 0600 of the temporary file each is written as."""
    import os
    old = os.umask(umask)
    try:
        cfg = TrainConfig(method="ti", data=str(shapes_dir), output=str(tmp_path), resolution=64, steps=2,
                          batch_size=2, token="zwx", sample_every=2, sample_steps=2, name="emb")
        result = train(cfg, adapter=load_diffusers("tiny"))
        from sd_trainplan.host.exports import place
        placed = place(result.export_path, str(tmp_path / "embeddings"), "zwx")  # the WebUI's folder, a copy
    finally:
        os.umask(old)
    files = [p for p in result.run_dir.rglob("*") if p.is_file()] + [placed]
    kinds = {p.suffix for p in files}
    assert {".safetensors", ".pt", ".toml", ".json", ".png", ".jsonl"} <= kinds
    assert {p.name: oct(p.stat().st_mode & 0o777) for p in files} == {p.name: oct(mode) for p in files}
