"""Data-parallel scaling: our trainer on 1 and on N GPUs through `accelerate launch`, BS 4 per GPU,
SD1.5-size random weights at 512 px. img/s from metrics.jsonl's timestamps, after a warm-up.

  python bench/multi_gpu_bench.py [--gpus 2] [--method dreambooth] [--steps 40] [--out DIR]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(n: int, method: str, steps: int, data: Path, out: Path, log_every: int = 5) -> dict:
    launcher = ["accelerate", "launch", "--num_processes", str(n), "--num_machines", "1", "--mixed_precision", "no",
                "--dynamo_backend", "no"] + (["--multi_gpu"] if n > 1 else [])
    cmd = launcher + ["-m", "sd_trainplan", "train", "--model", "random-sd1", "--data", str(data), "--output", str(out),
                      "--method", method, "--batch-size", "4", "--steps", str(steps), "--log-every", str(log_every),
                      "--resolution", "512", "--no-noise-scale", "--keep-last", "1"]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])})
    if p.returncode:  # the first traceback is the failing process's own, not the launcher's; a bad-input
        first = p.stderr.find("Traceback")  # exit (2) prints its message, and no traceback, before the launcher's
        return {"gpus": n, "exit": p.returncode,
                "error": p.stderr[max(0, first - 1500):first + 2500] if first >= 0 else p.stderr[-4000:]}
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    recs = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    recs = [r for r in recs if "images_seen" in r and "elapsed_s" in r]
    a, b = recs[1], recs[-1]  # from the second log step on: graphs recorded, caches warm
    if b["step"] <= a["step"]:
        return {"gpus": n, "error": f"--steps {steps} gives too few log steps at --log-every {log_every}: "
                                    f"need at least 3 (steps >= 3 x log-every)"}
    ips = (b["images_seen"] - a["images_seen"]) / (b["elapsed_s"] - a["elapsed_s"])
    notes = [line for line in p.stderr.splitlines() if "CUDA graphs" in line]
    return {"gpus": n, "img_per_s": ips, "ms_per_step": 1e3 * (b["elapsed_s"] - a["elapsed_s"]) / (b["step"] - a["step"]),
            "wall_s": time.time() - t0, "notes": notes}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--gpus", type=int, default=2)
    ap.add_argument("--method", default="dreambooth")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--log-every", type=int, default=5, help="log steps are the only host syncs")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    import torch
    from sd_trainplan.train.sample_data import make_shapes
    tmp = Path(tempfile.mkdtemp())
    # 12 images a kind; enough kinds that every process gets a batch of 4 (the trainer refuses fewer)
    data = make_shapes(tmp / "data", size=512, per_kind=-(-4 * a.gpus // 12))
    rows = [run(n, a.method, a.steps, data, Path(tempfile.mkdtemp(dir=tmp)), a.log_every) for n in (1, a.gpus)]
    gpu = torch.cuda.get_device_name()
    if "error" not in rows[0] and "error" not in rows[1]:
        rows[1]["speedup"] = rows[1]["img_per_s"] / rows[0]["img_per_s"]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{time.strftime('%Y-%m-%d')}-{gpu.replace(' ', '_')}-x{a.gpus}-{a.method}.json"
    path.write_text(json.dumps({"gpu": gpu, "method": a.method, "bs_per_gpu": 4, "log_every": a.log_every,
                                "rows": rows}, indent=1))
    for r in rows:
        print(json.dumps(r))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
