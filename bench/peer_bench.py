"""From Start to a usable file (issue 16): whole runs of the trainers people use, beside ours.

Each trainer runs as its user runs it, one process at a time, on the same random SD1.5-size model
saved as a diffusers folder (read from the page cache by every run), the same 8 images at 512 px and
the same settings (bf16 mixed precision, constant LR, no text-encoder training, no prior preservation,
no validation, no intermediate checkpoints). Timings are read off each process's own output as it
arrives, with a time stamp per line (the diffusers scripts refresh their progress bar every update and
read the loss with .item() each update; ours prints at its log steps and once after the first update):

- first update: from the process's start to its first finished update
- steady ms/update: between the first logged update at or past a quarter of the run and the last one
- last update -> file: from the last update to the newest file of the result (its mtime)
- last update -> exit, and the whole wall time
- GPU peak: the device's memory in use (NVML, every 50 ms) above what it held before the process

Trainers: `ours` (this checkout, `python -m sd_trainplan train`), `base` (the same command on the code
at --base-root: the baseline), `diffusers` (the v0.31.0 example scripts train_dreambooth.py,
train_dreambooth_lora.py and textual_inversion.py, unmodified, from --diffusers DIR; fetched, never
committed), `kohya` (sd-scripts' train_db.py / train_network.py from --kohya DIR). `ours:NAME=VALUE`
runs ours with one more training flag (e.g. ours:cudnn-benchmark=off), `ours:env:NAME=VALUE` with one
more environment variable (e.g. ours:env:SD_TRAINPLAN_TRITON=all).

  python bench/peer_bench.py --work /tmp/peer --out bench/results/peer.json
      [--cases db1-120,lora4-120,ti4-220,db4-220,db1-1600] [--trainers ours,diffusers,base]
      [--base-root DIR] [--diffusers DIR] [--kohya DIR] [--kohya-site DIR]
      [--project diffusers/db1-1600]   wall time of a pair not run, from its shorter run
      [--tiny]   a CPU smoke run: the tiny model at 64 px, a few updates

On a GPU, every trainer's packages are first compiled to bytecode in a PYTHONPYCACHEPREFIX (as any
install has them; the GPU machine's torch has none), and throwaway processes of each case read the CUDA
libraries from disk and compile cuDNN's attention and our Triton kernels, each once per machine
(peer_machine.py), so no trainer's first run pays that for the others; `--cold` skips the throwaways.

kohya's sd-scripts: release v0.10.1 (ae72efb, 2026-02-13, the newest tag), exported, never committed:
`git --git-dir=<mirror of kohya-ss/sd-scripts> archive v0.10.1 ':!bitsandbytes_windows' ':!docs'
':!images' ':!configs' ':!.github' ':!tests' ':!.ai' | tar -x -C .peer/kohya` (4 MB; the left-out
folders are Windows DLLs, docs and other models' tokenizer files; .peer/kohya/PINNED says so). Its
own pins travel as wheels in .peer/kohya-whl (cp312 manylinux, `pip download --no-deps`, 19 MB), one
version each, installed into their own --target folder that --kohya-site puts first on its
PYTHONPATH, so ours keeps the usual set: requirements.txt's diffusers 0.32.1, transformers 4.54.1,
accelerate 1.6.0, huggingface-hub 0.34.3, safetensors 0.4.5, einops 0.7.0, toml 0.10.2, voluptuous
0.15.2, imagesize 1.4.1, rich 14.1.0, plus what those need that the GPU machine lacks or has too new
(tokenizers 0.21.4 for transformers 4.54, importlib_metadata 8.5.0 for diffusers). Not carried:
opencv-python 4.10.0.84 (60 MB; the machine's opencv-python-headless is the same cv2), and the
optimizers, bitsandbytes, sentencepiece, tensorboard and ftfy that AdamW on SD1.5 never imports.
A --tiny run gives kohya a random SD1.5-size model (its U-Net's shape is written into its code): about
16 GB of memory and 90 s on a 2-core CPU for db1 and lora4 together.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peer_machine import warm_machine, warm_page_cache, with_bytecode  # noqa: E402
from peer_timing import measure, run_process  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CASES = {"db1-120": ("dreambooth", 1, 120), "db4-220": ("dreambooth", 4, 220), "lora4-120": ("lora", 4, 120),
         "ti4-220": ("ti", 4, 220), "db1-1600": ("dreambooth", 1, 1600)}
LR = {"dreambooth": 5e-6, "lora": 1e-4, "ti": 5e-4}
DIFFUSERS_SCRIPT = {"dreambooth": "train_dreambooth.py", "lora": "train_dreambooth_lora.py",
                    "ti": "textual_inversion.py"}


# ---- inputs: the model folder and the images ------------------------------------------------------

MAKE_MODEL = r"""
import sys, torch
from sd_trainplan.models.load import random_model
from sd_trainplan.models.tiny_diffusers import save_tiny_folder
if sys.argv[2] == "tiny":
    save_tiny_folder(sys.argv[1])
else:
    random_model("sd1", "cuda" if torch.cuda.is_available() else "cpu", torch.float32).save_folder(sys.argv[1])
"""


def make_model(folder: Path, kind: str, env: dict) -> Path:
    """The random model of `kind` ('tiny' or 'sd1') as a diffusers folder, unless it is there."""
    if not (folder / "model_index.json").is_file():
        subprocess.run([sys.executable, "-c", MAKE_MODEL, str(folder), kind], check=True, env=env, cwd=ROOT)
    return folder


def prepare(work: Path, tiny: bool, env: dict):
    """(model folder, image folder), made once per work folder."""
    model, images = make_model(work / "model", "tiny" if tiny else "sd1", env), work / "images"
    if not images.is_dir():
        from PIL import Image
        import numpy as np
        images.mkdir(parents=True)
        size = 64 if tiny else 512
        rng = np.random.default_rng(0)
        for i in range(8):  # smooth colour fields with noise: something a VAE encodes like a photo
            base = rng.integers(0, 255, (4, 4, 3)).astype(np.uint8)
            img = Image.fromarray(base).resize((size, size), Image.BICUBIC)
            arr = np.asarray(img).astype(np.int16) + rng.integers(-12, 12, (size, size, 3))
            Image.fromarray(arr.clip(0, 255).astype(np.uint8)).save(images / f"{i:02d}.png")
    return model, images


KOHYA_TOKENIZER = "openai_clip-vit-large-patch14"  # strategy_sd.TOKENIZER_ID as _load_tokenizer names its cache


def prepare_kohya(work: Path, model: Path, images: Path, tiny: bool, env: dict):
    """(model folder, image folder, tokenizer cache) for kohya's sd-scripts, made once per work folder.

    - Its U-Net (library/original_unet.py) has SD1.5's widths and depths written in, so the tiny
      model does not load: a --tiny run gives kohya a random SD1.5-size folder (on the CPU, fp32).
    - Its images: one `<repeats>_<class tokens>` folder, repeats 1, each image with a `.caption`
      file holding the diffusers scripts' instance prompt.
    - It loads the SD1 tokenizer from the Hub by name (openai/clip-vit-large-patch14), whatever the
      model folder holds; --tokenizer_cache_dir, its offline route, is a folder holding that name's
      tokenizer: the model's own."""
    if tiny:
        model = make_model(work / "model-sd1", "sd1", env)
    kohya, tokenizers = work / "kohya-images", work / "kohya-tokenizer"
    if not kohya.is_dir():
        folder = kohya / "1_sks dog"
        folder.mkdir(parents=True)
        for p in sorted(images.iterdir()):
            os.symlink(p, folder / p.name)
            (folder / p.name).with_suffix(".caption").write_text("a photo of sks dog")
    if not tokenizers.is_dir():
        tokenizers.mkdir(parents=True)
        os.symlink(model / "tokenizer", tokenizers / KOHYA_TOKENIZER)
    return model, kohya, tokenizers


# ---- each trainer's command -----------------------------------------------------------------------

def ours_cmd(case: str, model: Path, images: Path, out: Path, res: int, steps: int, extra: List[str]) -> List[str]:
    method, bs, _ = CASES[case]
    return [sys.executable, "-m", "sd_trainplan", "train", "--method", method, "--model", str(model),
            "--data", str(images), "--batch-size", str(bs), "--steps", str(steps), "--lr", str(LR[method]),
            "--scheduler", "constant", "--resolution", str(res), "--token", "sks", "--init-word", "dog",
            "--instance-prompt", "a photo of [name] dog", "--rank", "4", "--alpha", "4", "--seed", "0",
            "--output", str(out), "--name", case] + extra


def diffusers_cmd(case: str, model: Path, images: Path, out: Path, res: int, steps: int, folder: Path,
                  gpu: bool) -> List[str]:
    method, bs, _ = CASES[case]
    cmd = [sys.executable, str(folder / DIFFUSERS_SCRIPT[method]), "--pretrained_model_name_or_path", str(model),
           "--resolution", str(res), "--train_batch_size", str(bs), "--max_train_steps", str(steps),
           "--learning_rate", str(LR[method]), "--lr_scheduler", "constant", "--lr_warmup_steps", "0",
           "--output_dir", str(out), "--checkpointing_steps", "1000000", "--seed", "0",
           "--mixed_precision", "bf16" if gpu else "no"]
    if method == "ti":
        return cmd + ["--train_data_dir", str(images), "--learnable_property", "object", "--placeholder_token",
                      "<sks>", "--initializer_token", "dog", "--save_steps", "1000000"]
    cmd += ["--instance_data_dir", str(images), "--instance_prompt", "a photo of sks dog"]
    return cmd + (["--rank", "4"] if method == "lora" else [])


def kohya_cmd(case: str, model: Path, kohya_images: Path, tokenizers: Path, out: Path, res: int, steps: int,
              folder: Path, gpu: bool) -> Optional[List[str]]:
    """sd-scripts as its users run it (plain `python`, one process: what `accelerate launch` does
    on one GPU), with the diffusers scripts' settings; TI is not compared (the SD1.5 script is
    train_textual_inversion.py, not run here)."""
    method, bs, _ = CASES[case]
    if method == "ti":
        return None
    script = "train_db.py" if method == "dreambooth" else "train_network.py"
    cmd = [sys.executable, str(folder / script), "--pretrained_model_name_or_path", str(model),
           "--train_data_dir", str(kohya_images), "--caption_extension", ".caption",
           "--tokenizer_cache_dir", str(tokenizers),  # offline: the tokenizer from the model folder
           "--resolution", f"{res},{res}", "--train_batch_size", str(bs), "--max_train_steps", str(steps),
           "--learning_rate", str(LR[method]), "--lr_scheduler", "constant", "--optimizer_type", "AdamW",
           "--mixed_precision", "bf16" if gpu else "no", "--seed", "0",
           # no intermediate saves, samples or state (the defaults, said out loud): one file at the end
           "--output_dir", str(out), "--output_name", case, "--save_model_as", "safetensors",
           "--save_precision", "fp16",
           "--sdpa",  # torch's scaled_dot_product_attention (default: kohya's own attention in plain torch)
           "--cache_latents",  # each image through the VAE once before training, as our trainer does
           # cached latents make the loader trivial: worker processes (default 8, respawned each epoch
           # of 8 images) would only add start-up time
           "--max_data_loader_n_workers", "0"]
    if method == "dreambooth":
        # train_db trains the text encoder unless told; -1 is its "no training" (train_dreambooth.py
        # trains it only with --train_text_encoder)
        cmd += ["--stop_text_encoder_training", "-1"]
    else:
        # networks.lora's default targets: every Linear and 1x1 conv of the U-Net's transformer blocks
        # (q/k/v/out, feed-forward, proj_in/out: 192 layers; diffusers' script: q/k/v/out, 128); no
        # text-encoder LoRA, as in the diffusers script
        cmd += ["--network_module", "networks.lora", "--network_dim", "4", "--network_alpha", "4",
                "--network_train_unet_only"]
    return cmd


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="/tmp/peer")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "peer.json"))
    ap.add_argument("--cases", default="db1-120,lora4-120,ti4-220,db4-220,db1-1600")
    ap.add_argument("--trainers", default="ours,diffusers")
    ap.add_argument("--base-root", help="the baseline checkout (trainer 'base')")
    ap.add_argument("--diffusers", default=str(ROOT / ".peer" / "diffusers"))
    ap.add_argument("--kohya", default=str(ROOT / ".peer" / "kohya"))
    ap.add_argument("--kohya-site", help="site folder with kohya's pinned packages (first on its PYTHONPATH)")
    ap.add_argument("--only", help="run only these trainer/case pairs, e.g. ours/db1-120,diffusers/db1-120")
    ap.add_argument("--limit", type=float, default=400, help="seconds before a run is killed")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny model, 64 px, 3 updates")
    ap.add_argument("--cold", action="store_true",
                    help="no throwaway runs first: the first trainer pays the machine's one-time compiles")
    ap.add_argument("--note", default="")
    ap.add_argument("--project", default="diffusers/db1-1600",
                    help="trainer/case pairs not run whose wall time is projected from a shorter run of theirs")
    args = ap.parse_args()
    work = Path(args.work).resolve()  # the peers run in other folders: absolute paths
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false")
    site = os.environ.get("PYTHONPATH", "")
    gpu = not args.tiny
    if gpu:
        env = with_bytecode(env, work, [args.kohya_site] if args.kohya_site else [])
    res = 64 if args.tiny else 512
    model_env = dict(env, PYTHONPATH=os.pathsep.join([str(ROOT), site]))
    model, images = prepare(work, args.tiny, model_env)
    pairs = [(t, c) for c in args.cases.split(",") for t in args.trainers.split(",")]
    if args.only:
        wanted = {tuple(x.rsplit("/", 1)) for x in args.only.split(",")}
        pairs = [p for p in pairs if p in wanted]
    if any(t == "kohya" for t, _ in pairs):
        kohya_model, kohya_images, kohya_tokenizers = prepare_kohya(work, model, images, args.tiny, model_env)
    report = {"date": time.strftime("%Y-%m-%d"), "note": args.note, "device": device_name(), "runs": [],
              "settings": {"resolution": res, "images": 8, "lr": LR, "precision": "bf16" if gpu else "fp32",
                           "bytecode_prefix": env.get("PYTHONPYCACHEPREFIX")}}
    out_path = Path(args.out)
    if gpu and not args.cold:
        out = work / "out" / "warm"  # throwaway runs: 2 updates of each case timed
        cases = dict.fromkeys(c for _, c in pairs)
        warm_machine(dict(env, PYTHONPATH=os.pathsep.join([str(ROOT), site])), out,
                     [ours_cmd(c, model, images, out, res, 2, ["--final-checkpoint", "off"]) for c in cases])
    for trainer, case in pairs:
        method, bs, steps = CASES[case]
        steps = 3 if args.tiny else steps
        dest = work / "out" / f"{trainer.replace(':', '_').replace('=', '_').replace('/', '_')}-{case}"
        subprocess.run(["rm", "-rf", str(dest)], check=True)
        dest.mkdir(parents=True)
        name = trainer.split(":")[0]
        if name in ("ours", "base"):
            root = ROOT if name == "ours" else Path(args.base_root)
            extra, more_env = [], {}
            if trainer.startswith(f"{name}:env:"):  # ours:env:SD_TRAINPLAN_TRITON=all
                key, value = trainer.split(":", 2)[2].split("=", 1)
                more_env[key] = value
            elif ":" in trainer:
                flag, value = trainer.split(":", 1)[1].split("=")
                extra = [f"--{flag}", value]
            cmd, cwd = ours_cmd(case, model, images, dest, res, steps, extra), root
            run_env = dict(env, PYTHONPATH=os.pathsep.join([str(root), site]), **more_env)
        elif name == "diffusers":
            cmd, cwd = diffusers_cmd(case, model, images, dest, res, steps, Path(args.diffusers), gpu), dest
            run_env = env
        elif name == "kohya":
            cwd = Path(args.kohya).resolve()  # absolute: the script path and PYTHONPATH must not depend on cwd
            cmd = kohya_cmd(case, kohya_model, kohya_images, kohya_tokenizers, dest, res, steps, cwd, gpu)
            kohya_site = args.kohya_site and str(Path(args.kohya_site).resolve())
            run_env = dict(env, PYTHONPATH=os.pathsep.join([p for p in (kohya_site, str(cwd), site) if p]))
        else:
            raise SystemExit(f"--trainers: unknown trainer {trainer}")
        if cmd is None:
            continue
        warm_page_cache(kohya_model if name == "kohya" else model)
        print(f"== {trainer} {case}: {' '.join(cmd[1:3])} ...", flush=True)
        rc, t0, t1, segs, gib = run_process(cmd, run_env, cwd, args.limit)
        row = {"trainer": trainer, "case": case, "method": method, "batch_size": bs, "updates": steps, "rc": rc,
               **measure(trainer, segs, t0, t1, steps, dest), "gpu_peak_gib": gib,
               "cmd": " ".join(cmd[1:])}
        timings = next(dest.rglob("timings.json"), None)
        if timings is not None:
            row["phases"] = json.loads(timings.read_text())["seconds"]
        if rc != 0 or row["steady_ms"] is None:
            row["tail"] = "\n".join(s for _, s in segs[-40:])[-4000:]
        report["runs"].append(row)
        print(json.dumps({k: v for k, v in row.items() if k not in ("cmd", "tail")}), flush=True)
        if "tail" in row:
            print(row["tail"], flush=True)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(report, indent=1))
        subprocess.run(["rm", "-rf", str(dest)], check=True)  # a DB export is 2-4 GB: keep the disk free
    report["projected"] = projections(report["runs"], pairs, args.project)
    report["ratios"] = ratios(report["runs"] + report["projected"])
    out_path.write_text(json.dumps(report, indent=1))
    print(table(report["runs"] + report["projected"]))
    for r in report["ratios"]:
        print(json.dumps(r))
    return 0


def projections(runs: List[dict], pairs, wanted: str) -> List[dict]:
    """For a trainer/case in `wanted` that was not run (e.g. diffusers/db1-1600, 7 minutes of device
    time): its wall time from its own run of the same method and batch size with fewer updates, as
    first update + steady ms x the other updates + last update -> exit. Marked as projected."""
    out = []
    for item in filter(None, (wanted or "").split(",")):
        trainer, case = item.rsplit("/", 1)
        if (trainer, case) in pairs:
            continue
        method, bs, steps = CASES[case]
        base = next((r for r in runs if r["trainer"] == trainer and r["method"] == method and r["batch_size"] == bs
                     and r["rc"] == 0 and r["steady_ms"] and r["updates"] < steps), None)
        if base is None:
            continue
        wall = base["first_update_s"] + base["steady_ms"] / 1000 * (steps - 1) + base["last_update_to_exit_s"]
        out.append({"trainer": trainer, "case": case, "method": method, "batch_size": bs, "updates": steps,
                    "rc": None, "projected_from": base["case"], "first_update_s": base["first_update_s"],
                    "steady_ms": base["steady_ms"], "last_update_to_file_s": base["last_update_to_file_s"],
                    "last_update_to_exit_s": base["last_update_to_exit_s"], "wall_s": round(wall, 2),
                    "gpu_peak_gib": base["gpu_peak_gib"]})
    return out


def ratios(runs: List[dict]) -> List[dict]:
    """Per case and peer (the diffusers scripts, kohya's): the peer's whole run and steady ms/update over ours."""
    out = []
    for case in CASES:
        ours = next((r for r in runs if r["trainer"] == "ours" and r["case"] == case and r["rc"] == 0), None)
        for name in ("diffusers", "kohya"):
            peer = next((r for r in runs if r["trainer"] == name and r["case"] == case), None)
            if ours and peer and peer["wall_s"] and ours["steady_ms"] and peer["steady_ms"]:
                out.append({"case": case, "peer": name, "whole_run_x": round(peer["wall_s"] / ours["wall_s"], 2),
                            "steady_x": round(peer["steady_ms"] / ours["steady_ms"], 2),
                            "peer_projected": "projected_from" in peer})
    return out


def device_name() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        return out.stdout.strip() or "cpu"
    except (OSError, subprocess.SubprocessError):
        return "cpu"


def table(runs: List[dict]) -> str:
    head = "| trainer | case | rc | first update s | steady ms/update | last update -> file s | -> exit s | wall s | GPU GiB |"
    lines = [head, "|" + "---|" * 9]
    for r in runs:
        rc = f"projected from {r['projected_from']}" if "projected_from" in r else r["rc"]
        lines.append(f"| {r['trainer']} | {r['case']} | {rc} | {r['first_update_s']} | {r['steady_ms']} |"
                     f" {r['last_update_to_file_s']} | {r['last_update_to_exit_s']} | {r['wall_s']} |"
                     f" {r['gpu_peak_gib']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
