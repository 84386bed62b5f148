"""`python -m sd_trainplan (plan | ui | train | lr-range)`: the stable scripting interface.

Each subcommand lives in its own small function; `plan` is pure Python and imports no torch.
Bad input exits with status 2 and one line per problem naming the flag.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict, List, Optional

from .plan import FIELDS, plan_from_raw
from .plan.presets import PresetError, get_preset, load_presets
from .plan.render import render_text
from .ui.app import DEFAULT_PORT  # no gradio import: the ui package loads it lazily

EXIT_BAD_INPUT = 2


def add_plan_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per planner field; values stay strings so the planner's messages name the flag."""
    parser.add_argument("--preset", help="fill inputs from a preset (flags override): "
                        + ", ".join(load_presets()))
    for f in FIELDS.values():
        if f.kind == "bool":
            parser.add_argument(f.flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None,
                                help=f.help)
        else:
            parser.add_argument(f.flag, dest=f.name, default=None, metavar=f.name.upper(), help=f.help)


def plan_raw_inputs(args: argparse.Namespace) -> Dict[str, Any]:
    """Preset values first, then every flag the user gave."""
    raw: Dict[str, Any] = {}
    if getattr(args, "preset", None):
        raw.update(get_preset(args.preset).inputs)
    for name in FIELDS:
        v = getattr(args, name, None)
        if v is not None:
            raw[name] = v
    return raw


def cmd_plan(args: argparse.Namespace) -> int:
    try:
        raw = plan_raw_inputs(args)
    except PresetError as e:
        print(f"--preset: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = plan_from_raw(raw)
    if args.json:
        print(json.dumps(result.to_json(), indent=2, allow_nan=False))
    elif not result.errors:
        print(render_text(result))
    if result.errors:
        for e in result.errors:
            print(e.text(flag=True), file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    """Serve the Train Planner page on 127.0.0.1; gradio is imported only here."""
    from .ui.app import serve
    serve(port=args.port, model=args.model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sd_trainplan",
                                     description="Plan and run Stable Diffusion fine-tunes.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("plan", help="compute the plan: every figure with its formula and source")
    add_plan_flags(p)
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=cmd_plan)
    from .train_cli import register as register_train  # flags only: torch is imported when it runs
    register_train(sub)
    u = sub.add_parser("ui", help="open the Train Planner page (gradio) on 127.0.0.1")
    u.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to serve on (default {DEFAULT_PORT})")
    u.add_argument("--model", default="", help="the trainer's model: a diffusers folder or a .safetensors file"
                   " (default: the built-in tiny demo model and the sample images)")
    u.set_defaults(func=cmd_ui)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)
