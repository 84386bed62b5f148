"""From a process's start to a loaded SDXL adapter, models/plain against the libraries' classes (issue 16).

  python bench/sdxl_start.py [--folder SDXL_FOLDER] [--tries 5] [--device cpu] [--out FILE.json]

Each try is a fresh interpreter (nothing imported, the folder in the page cache after the first): the
parent notes the wall clock before starting it, the child prints it once `load_diffusers` returned,
with its load_seconds and which of diffusers, transformers, torch._dynamo it imported. The two
kinds alternate. Without --folder the tiny SDXL (models/tiny_sdxl_diffusers.py) is written to a
temporary folder: the imports are the same as a full-size model's, the weights are not.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, time, json
from sd_trainplan.models.diffusers_adapter import load_diffusers
a = load_diffusers({folder!r}, device={device!r}, plain={plain})
print("RESULT", json.dumps(dict(t=time.time(), load=a.load_seconds, describe=a.describe(),
      imported=[m for m in ("diffusers", "transformers", "torch._dynamo") if m in sys.modules])))
"""


def one(folder: str, device: str, plain: bool) -> dict:
    start = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD.format(folder=folder, device=device, plain=plain)],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.split("RESULT ", 1)[1])
    return dict(res, seconds=round(res.pop("t") - start, 3))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder")
    ap.add_argument("--tries", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out")
    args = ap.parse_args()
    folder = args.folder
    if folder is None:
        from sd_trainplan.models.tiny_sdxl_diffusers import save_tiny_sdxl_folder
        folder = str(save_tiny_sdxl_folder(Path(tempfile.mkdtemp()) / "tiny-sdxl"))
    one(folder, args.device, True)  # (page cache, bytecode)
    runs = {"plain": [], "libraries": []}
    for _ in range(args.tries):
        for kind in runs:
            runs[kind].append(one(folder, args.device, kind == "plain"))
    summary = {}
    for kind, rs in runs.items():
        secs = [r["seconds"] for r in rs]
        summary[kind] = dict(median_s=statistics.median(secs), min_s=min(secs), max_s=max(secs),
                             imported=rs[-1]["imported"], load=rs[-1]["load"], describe=rs[-1]["describe"])
        print(f"{kind:9s} start -> adapter: median {summary[kind]['median_s']:.2f} s ({min(secs):.2f}-{max(secs):.2f}),"
              f" imported {summary[kind]['imported']}, load_seconds {summary[kind]['load']}")
    if args.out:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        Path(args.out).write_text(json.dumps(dict(date=time.strftime("%Y-%m-%d"), commit=commit, device=args.device,
                                                  cpus=os.cpu_count(), load_average=os.getloadavg(), folder=folder,
                                                  tries=args.tries, summary=summary, runs=runs), indent=1))


if __name__ == "__main__":
    main()
