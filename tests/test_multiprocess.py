"""Data parallel through `accelerate launch`, counted right: two CPU processes (gloo) at BS 2 see
the samples one process at BS 4 sees, the schedule ends exactly at the planned update count, and
only one set of files is written."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ACCELERATE = Path(sys.executable).with_name("accelerate")
COMMON = ["--resolution", "64", "--steps", "6", "--method", "lora", "--lr", "2e-3", "--scheduler", "cosine",
          "--warmup", "2", "--log-every", "1", "--seed", "3", "--flip", "0.5", "--no-noise-scale"]


def run_dir(out: Path) -> Path:
    (only,) = [p for p in out.iterdir() if p.is_dir()]  # one run folder, whatever the process count
    return only


def records(out: Path):
    return [json.loads(x) for x in (run_dir(out) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def runs(shapes_dir, tmp_path_factory):
    two = tmp_path_factory.mktemp("two-processes")
    one = tmp_path_factory.mktemp("one-process")
    launched = subprocess.run([str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "sd_trainplan", "train",
                               "--data", str(shapes_dir), "--output", str(two), "--batch-size", "2", *COMMON],
                              capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "sd_trainplan", "train", "--data", str(shapes_dir), "--output",
                             str(one), "--batch-size", "4", *COMMON], capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    return launched, two, one


def test_two_processes_match_one_at_the_same_effective_batch(runs):
    launched, two, one = runs
    a, b = records(two), records(one)
    assert [r["images_seen"] for r in a] == [4, 8, 12, 16, 20, 24]  # BS 2 x 2 processes per update
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    assert [r["loss"] for r in a] == pytest.approx([r["loss"] for r in b], rel=1e-4)
    from safetensors.torch import load_file
    ta = load_file(next(run_dir(two).glob("*.safetensors")))
    tb = load_file(next(run_dir(one).glob("*.safetensors")))
    for k in tb:
        torch.testing.assert_close(ta[k].float(), tb[k].float(), rtol=2e-3, atol=1e-5)


def test_schedule_counted_once_and_ends_at_the_planned_count(runs):
    launched, two, _ = runs
    from sd_trainplan.plan.schedule import Schedule, lr_at
    recs = records(two)
    assert recs[-1]["step"] == 6  # not 12: updates are counted once, not per process
    sched = Schedule("cosine", 2e-3, 6, warmup=2)
    assert [r["lr"] for r in recs] == pytest.approx([lr_at(sched, u) for u in range(6)])


def test_only_the_main_process_writes(runs):
    launched, two, _ = runs
    folder = run_dir(two)
    assert len(list(folder.glob("*.safetensors"))) == 1
    assert len((folder / "metrics.jsonl").read_text().splitlines()) == 6
    assert launched.stdout.strip().count(".safetensors") == 1  # one process prints the result


def test_a_two_process_run_resumes_on_one_process_at_the_images_seen(runs, tmp_path):
    """The data position is the number of images seen: the two-process run (BS 2 x 2 processes, 6
    updates, 24 images) resumed on one process at BS 2 continues at update 24 // 2 = 12, says so,
    and counts on from there to its new end."""
    import shutil
    _, two, _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run_dir(two), copy)
    resumed = subprocess.run([sys.executable, "-m", "sd_trainplan", "train", "--resume", str(copy), "--steps", "14"],
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    said = resumed.stdout + resumed.stderr
    assert "the effective batch changed from 4 to 2: 24 images were seen" in said
    assert "continues at update 12" in said
    recs = [json.loads(x) for x in (copy / "metrics.jsonl").read_text().splitlines()]
    after = recs[6:]  # the first six are the two-process run's
    assert [r["step"] for r in after] == [13, 14]
    assert [r["images_seen"] for r in after] == [26, 28]
    first = sorted(run_dir(two).glob("*.safetensors"))
    exports = sorted(copy.glob("*.safetensors"))
    assert len(exports) == 2 and [p.name for p in first] == [exports[1].name]  # the earlier export is kept as it was
    assert exports[1].read_bytes() == first[0].read_bytes() and exports[0].read_bytes() != first[0].read_bytes()
