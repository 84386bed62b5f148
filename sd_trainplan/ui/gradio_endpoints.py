"""The page's events described to gradio 4's browser client, so it stops warning about them.

gradio 4.40's client (Forge's pin) looks up every event it sends by number in
`api_info.unnamed_endpoints` (client/src/utils/submit.ts, get_endpoint_info), but the server's
/info fills only `named_endpoints` (blocks.py, get_api_info), so for every event that sends
inputs the client finds no description and logs "Too many arguments provided for the endpoint."
(client/src/helpers/api_info.ts, map_data_to_params). Forge's own Generate logs it four times;
the planner, which recomputes on every keystroke, logged it at every change. `describe(blocks)`
makes the Blocks (the WebUI's, where host/api.py calls it, or the standalone app's) add, for the
page's own events only (those touching a component whose elem_id starts with `stp_`), an unnamed
entry with one parameter per input, which is what the client checks.
Nothing else changes: the events stay out of the API page (that lists named endpoints) and the
values sent are the same. gradio 3.41 (AUTOMATIC1111) has no such check: nothing is added there.
"""
from __future__ import annotations

from typing import Any, Dict

MARK = "stp_"


def ours(fn) -> bool:
    blocks = list(getattr(fn, "inputs", []) or []) + list(getattr(fn, "outputs", []) or [])
    return any(str(getattr(b, "elem_id", "") or "").startswith(MARK) for b in blocks)


def parameter(block, index: int) -> Dict[str, Any]:
    kind = type(block).__name__
    return {"label": getattr(block, "label", None) or f"parameter_{index}", "parameter_name": f"param_{index}",
            "parameter_has_default": True, "parameter_default": None, "type": {},
            "python_type": {"type": "Any", "description": ""}, "component": kind}


def endpoints(demo) -> Dict[str, Dict[str, Any]]:
    """fn id -> {"parameters", "returns"} for the tab's events in `demo`."""
    out = {}
    for fn_id, fn in getattr(demo, "fns", {}).items():
        if ours(fn):
            out[str(fn_id)] = {"parameters": [parameter(b, i) for i, b in enumerate(fn.inputs)],
                               "returns": [parameter(b, i) for i, b in enumerate(fn.outputs)], "show_api": False}
    return out


def describe(demo) -> bool:
    """Make `demo.get_api_info` (what /info answers) include the tab's events. Returns whether it did."""
    import gradio as gr
    if int(gr.__version__.split(".")[0]) < 4 or demo is None or not hasattr(demo, "get_api_info"):
        return False
    original = demo.get_api_info
    if getattr(original, "stp_described", False):
        return True

    def get_api_info(*args, **kwargs):
        info = original(*args, **kwargs)
        if isinstance(info, dict):
            info.setdefault("unnamed_endpoints", {}).update(endpoints(demo))
        return info
    get_api_info.stp_described = True
    demo.get_api_info = get_api_info
    # a running app caches /info at its first request (gradio's launch requests its own page to check
    # it serves, before the WebUI calls on_app_started): add the entries to that copy too
    app = getattr(demo, "server_app", None)
    for attr in ("api_info", "all_app_info"):
        cached = getattr(app, attr, None)
        if isinstance(cached, dict):
            cached.setdefault("unnamed_endpoints", {}).update(endpoints(demo))
    return True
