"""`python -m sd_trainplan train` and `lr-range`: flags for every TrainConfig field, over an optional
--config TOML; bad input is reported (exit 2) before any model is loaded; Ctrl-C stops at the
next update and saves a resumable checkpoint."""
from __future__ import annotations

import argparse
import signal
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Dict, List

EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3
ALL_WRITTEN = False  # set once a run has returned: __main__ may then exit without the slow teardown
EXIT_NON_FINITE = 4  # the loss or weights became NaN/inf: stopped, nothing non-finite written


def add_train_flags(p: argparse.ArgumentParser) -> None:
    from .train.config import TrainConfig
    p.add_argument("--config", help="a run.toml; flags override its values")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted (or finished, with more --steps) run")
    for f in fields(TrainConfig):
        if f.name == "concepts":
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(f.default, bool):
            p.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            p.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper())


def config_from_args(args: argparse.Namespace):
    """Config file (or the run's own config when resuming), then every flag given."""
    from .train.checkpoint import read_run_config
    from .train.config import TrainConfig, config_from_dict, read_toml
    raw: Dict = {}
    if args.resume:
        raw.update(read_run_config(Path(args.resume)).to_dict())
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise FileNotFoundError(f"--config: {path} does not exist")
        raw.update(read_toml(path.read_text(encoding="utf-8")))
    for f in fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            raw[f.name] = v
    return config_from_dict(raw)


def cmd_train(args: argparse.Namespace) -> int:
    from .train.config import ConfigError
    from .train.data import DataError
    from .train.events import ProgressBar
    from .train.finite import NonFiniteLoss
    from .train.loop import train
    from .models.diffusers_adapter import ModelLoadError
    try:
        cfg = config_from_args(args)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        return _bad(str(e))
    from .train.dist import from_environment
    procs = from_environment()  # `accelerate launch` sets up several processes; plain runs get one
    stop = _install_stop_handler()
    try:
        result = train(cfg, sinks=[ProgressBar()], stop=stop, resume=args.resume, procs=procs, started=_started())
    except (ConfigError, DataError, ModelLoadError) as e:
        return _bad(str(e))
    except NonFiniteLoss as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return EXIT_NON_FINITE
    global ALL_WRITTEN
    ALL_WRITTEN = True
    if result.stopped:
        return EXIT_STOPPED
    if procs.main:
        print(result.export_path)
    return 0


def _started() -> float:
    """When `python -m sd_trainplan` began (its __main__ notes it), so the log counts the imports."""
    for name in ("__main__", "sd_trainplan.__main__"):  # run as `-m`, the module is __main__
        started = getattr(sys.modules.get(name), "STARTED", None)
        if isinstance(started, float):
            return started
    return time.monotonic()


def _bad(message: str) -> int:
    for line in message.splitlines():
        print(_flagged(line), file=sys.stderr)
    return EXIT_BAD_INPUT


def _flagged(line: str) -> str:
    """'batch_size: ...' -> '--batch-size: ...' so the message names the flag the user typed."""
    head, sep, rest = line.partition(": ")
    if sep and head.isidentifier():
        return f"--{head.replace('_', '-')}: {rest}"
    return line


def _install_stop_handler():
    """First Ctrl-C: stop at the next update and save; a second one aborts at once."""
    state = {"stop": False}

    def handler(signum, frame):
        if state["stop"]:
            raise KeyboardInterrupt
        state["stop"] = True
        print("\nstopping after this update (Ctrl-C again to abort)...", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return lambda: state["stop"]


def cmd_lr_range(args: argparse.Namespace) -> int:
    from .models.diffusers_adapter import ModelLoadError
    from .train.config import ConfigError
    from .train.data import DataError
    from .train.events import ProgressBar
    from .train.lr_range import lr_range_test
    from .train.dist import from_environment
    procs = from_environment()  # `accelerate launch` sweeps on several processes as one run
    try:
        cfg = config_from_args(args)
        steps = _sweep_steps(cfg, args, procs.world)
        max_lr = float(args.max_lr) if args.max_lr else None
        min_lr = float(args.min_lr) if args.min_lr else 0.0
    except (ConfigError, DataError, FileNotFoundError, ValueError) as e:
        return _bad(str(e))
    stop = _install_stop_handler()
    try:
        result = lr_range_test(cfg, mode=args.mode, max_lr=max_lr, min_lr=min_lr, steps=steps,
                               sinks=[ProgressBar()], stop=stop, procs=procs)
    except (ConfigError, DataError, ModelLoadError, ValueError) as e:
        return _bad(str(e))
    if not procs.main:
        return 0
    for name, s in result.suggestions.items():
        print(f"{name:>9}: {s.lr:.4g}  ({s.method})")
    print(result.message)
    print(result.caution)
    print(result.json_path)
    print(result.png_path)
    return 0


def _sweep_steps(cfg, args, processes: int = 1) -> int:
    """--sweep-epochs E: the planner's sweep_steps = train_images x E / (BS x P) (at GA 1); else --steps."""
    if not args.sweep_epochs:
        return cfg.steps
    from .plan.quantity import round_half_up
    from .train.data import load_dataset
    data = load_dataset(cfg.data, cfg.resolution, cfg.buckets, cfg.skip_bad_images, cfg.val_split or 0.2, cfg.seed)
    return max(1, round_half_up(len(data.train) * cfg.repeats * float(args.sweep_epochs) / (cfg.batch_size * processes)))


def register(sub) -> List[argparse.ArgumentParser]:
    p = sub.add_parser("train", help="run a Dreambooth, Textual Inversion or LoRA training")
    add_train_flags(p)
    p.set_defaults(func=cmd_train)
    r = sub.add_parser("lr-range", help="LR range test: sweep the LR, read the bounds from the validation loss")
    add_train_flags(r)
    r.add_argument("--mode", choices=("linear", "exp"), default="linear",
                   help="linear 0 -> max (seed 004) or exponential min -> max (fastai)")
    r.add_argument("--max-lr", help="LR at the end of the sweep (default: --lr)")
    r.add_argument("--min-lr", help="LR at the start of an exponential sweep (default: max / 10^4)")
    r.add_argument("--sweep-epochs", help="sweep length in epochs (the planner's sweep_steps); default --steps")
    r.set_defaults(func=cmd_lr_range)
    return [p, r]
