"""Training events -> the WebUI's `shared.state` (its progress bar, live preview and Interrupt
read that) and a status record for GET /sd_trainplan/train.

shared.state as the WebUI's own Train tab fills it (modules/textual_inversion/textual_inversion.py,
v1.10.1): job_count = max steps, job_no = steps done, textinfo = an HTML summary, the preview
image through assign_current_image.
"""
from __future__ import annotations

import html
import threading
import time
from typing import Any, Dict, Optional

from ..train.events import Event


def _num(x: Optional[float], spec: str = ".5f") -> str:
    return "—" if x is None else format(x, spec)


def textinfo(ev: Event, status: Dict[str, Any]) -> str:
    rows = [f"Step: {ev.step}/{ev.total}" if ev.total else "",
            f"Loss: {_num(status.get('loss'))}" if status.get("loss") is not None else "",
            f"Validation loss: {_num(status.get('val_loss'))}" if status.get("val_loss") is not None else "",
            f"Learning rate: {_num(status.get('lr'), '.3g')}" if status.get("lr") is not None else "",
            f"ETA: {int(ev.eta // 60)} min {int(ev.eta % 60)} s" if ev.eta is not None else "",
            html.escape(ev.message) if ev.message else ""]
    return html_info("<br/>\n".join(r for r in rows if r))


def html_info(body: str) -> str:
    """shared.state.textinfo as HTML for the tab (javascript/trainplan.js puts it in its own box). It
    ends with a newline: the WebUI's progress bar writes a textinfo without one into the bar as text
    (progressbar.js: `res.textinfo.indexOf("\\n") == -1`), which would show the tags."""
    return f"<p>{body}</p>\n"


class StateSink:
    """Feeds shared.state; `state` is modules.shared.state (read at each event: the WebUI may
    replace it)."""

    def __init__(self, get_state, status: "JobStatus"):
        self.get_state = get_state
        self.status = status

    def __call__(self, ev: Event) -> None:
        state = self.get_state()
        if state is None:
            return
        if ev.total:
            state.job_count = ev.total
        if ev.kind in ("step", "done", "stopped"):
            state.job_no = ev.step
        if ev.kind == "sample" and ev.extra.get("image") is not None:
            state.assign_current_image(ev.extra["image"])
        state.textinfo = textinfo(ev, self.status.snapshot())


class JobStatus:
    """The current (or last) run, for GET /sd_trainplan/train. Thread-safe."""

    FIELDS = ("step", "total", "loss", "lr", "val_loss", "stable_loss", "eta", "path", "message")

    def __init__(self):
        self._lock = threading.Lock()
        self._data: Dict[str, Any] = {"state": "idle", "task_id": None}

    def queued(self, task_id: str, method: str = "") -> None:
        with self._lock:
            self._data = {"state": "queued", "task_id": task_id, "method": method, "queued_at": time.time()}

    def set(self, **kw: Any) -> None:
        with self._lock:
            self._data.update(kw)

    def __call__(self, ev: Event) -> None:
        with self._lock:
            d = self._data
            if d.get("state") == "queued":
                d["state"] = "running"
            for k in self.FIELDS:
                v = getattr(ev, k)
                if v is not None and v != "":
                    d[k] = v
            d["event"] = ev.kind
            if ev.kind in ("done", "stopped", "error"):
                d["state"] = {"done": "done", "stopped": "stopped", "error": "error"}[ev.kind]

    def snapshot(self) -> Dict[str, Any]:
        with self._lock:
            return dict(self._data)
