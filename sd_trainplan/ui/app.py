"""The standalone app: `python -m sd_trainplan ui [--model tiny|PATH] [--port N]`, served on 127.0.0.1.

Nothing is fetched at run time: gradio's analytics and version check are off, the theme uses
the browser's own fonts, and the page's styles come from the repository's style.css (the
same file the WebUI injects when the extension is installed there).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

STYLE = Path(__file__).resolve().parents[2] / "style.css"
DEFAULT_PORT = 7865
HOST = "127.0.0.1"


def offline_environment() -> None:
    """Call before gradio is imported: no analytics, no version check, loopback never proxied."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    for var in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(var, "").split(",") if h]
        os.environ[var] = ",".join(hosts + [h for h in ("127.0.0.1", "localhost") if h not in hosts])


def read_css() -> Optional[str]:
    try:
        return STYLE.read_text(encoding="utf-8")
    except OSError:
        return None


def build_app(model: str = ""):
    """The page with the standalone hooks; `model` (a path) replaces the built-in tiny demo model."""
    offline_environment()
    from . import compat
    from .page import build_planner
    from .gradio_endpoints import describe
    app = build_planner(css=read_css(), theme=compat.theme(), title="Train Planner · sd_trainplan", model=model)
    describe(app)  # no "Too many arguments" warning in the browser console at each change (gradio 4)
    return compat.enable_queue(app)


def serve(port: int = DEFAULT_PORT, host: str = HOST, model: str = "") -> None:
    app = build_app(model)
    print(f"Train Planner: http://{host}:{port}  (Ctrl+C stops it)", flush=True)
    app.launch(server_name=host, server_port=port, show_api=False, inbrowser=False, quiet=True)
