"""HTTP routes, added when the WebUI's app starts (on_app_started):

POST /sd_trainplan/plan   body: the planner's inputs as JSON (the same names as `plan --json`'s
                          "inputs", e.g. {"images": 26, "batch_size": 13, "grad_accum": 2,
                          "steps": 3000, "step_unit": "batch", "method": "ti", "lr": 5e-3});
                          answer: the plan JSON {"inputs", "quantities", "warnings", "errors"},
                          status 422 when an input is bad (each error names its field).
GET  /sd_trainplan/train  the current or last run: state (idle | queued | running | done | stopped
                          | error), task_id (for the WebUI's /internal/progress), step, total,
                          loss, lr, val_loss, eta, message, exported (the file placed), notes.
"""
from __future__ import annotations

from typing import Any, Dict

from ..plan import plan_from_raw


def plan_json(inputs: Dict[str, Any]) -> Dict[str, Any]:
    if not isinstance(inputs, dict):
        return {"inputs": None, "quantities": {}, "warnings": [],
                "errors": [{"field": "", "message": "send the planner's inputs as a JSON object"}]}
    return plan_from_raw({k: v for k, v in inputs.items()}).to_json()


def train_status() -> Dict[str, Any]:
    from .hooks import STATUS
    return STATUS.snapshot()


def on_app_started(demo, app) -> None:
    from fastapi import Body
    from fastapi.responses import JSONResponse

    def plan_route(inputs: Dict[str, Any] = Body(default={})):
        result = plan_json(inputs)
        return JSONResponse(result, status_code=422 if result["errors"] else 200)

    app.add_api_route("/sd_trainplan/plan", plan_route, methods=["POST"])
    app.add_api_route("/sd_trainplan/train", train_status, methods=["GET"])
    from ..ui.gradio_endpoints import describe
    describe(demo)  # gradio 4 (Forge): the tab's events described to the browser client
