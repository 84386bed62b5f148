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


def test_lr_range_test_on_two_processes_sweeps_as_one(shapes_dir, tmp_path):
    """`accelerate launch ... lr-range` sweeps as one data-parallel run: at BS 2 x 2 processes it
    runs the sweep length one process at BS 4 runs (14 images x 2 epochs / 4 = 7 updates), the
    processes split each validation pass and sum it, so every validation point matches the single
    process's, and one process writes one result and prints it once."""
    args = ["-m", "sd_trainplan", "lr-range", "--data", str(shapes_dir), "--resolution", "64", "--max-lr", "2e-2",
            "--sweep-epochs", "2", "--val-timesteps", "2", "--seed", "3"]
    two, one = tmp_path / "two", tmp_path / "one"
    launched = subprocess.run([str(ACCELERATE), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                               "--mixed_precision", "no", "--dynamo_backend", "no", *args, "--batch-size", "2",
                               "--output", str(two)], capture_output=True, text=True, timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    single = subprocess.run([sys.executable, *args, "--batch-size", "4", "--output", str(one)],
                            capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]
    a = json.loads((run_dir(two) / "lr_range.json").read_text())
    b = json.loads((run_dir(one) / "lr_range.json").read_text())
    assert a["steps"] == b["steps"] == 7
    va = [(p["step"], p["val_loss"]) for p in a["points"] if p.get("val_loss") is not None]
    vb = [(p["step"], p["val_loss"]) for p in b["points"] if p.get("val_loss") is not None]
    assert [s for s, _ in va] == [s for s, _ in vb] and len(va) >= 3
    assert va[0][0] == 0 and va[0][1] == pytest.approx(vb[0][1], rel=1e-6)  # same weights: the split sums exactly
    # later, the weights differ by the rounding of averaged gradients, grown by the sweep's rising LR
    assert [v for _, v in va] == pytest.approx([v for _, v in vb], rel=1e-3)
    assert (run_dir(two) / "lr_range.png").exists()
    assert launched.stdout.count("lr_range.json") == 1 and launched.stdout.count("lower:") == 1
