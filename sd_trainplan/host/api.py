"""HTTP routes, added when the WebUI's app starts (on_app_started), under the WebUI's own API rules:
they exist only when the WebUI serves its API (--api, or --nowebui), and with --api-auth they ask
for the same HTTP Basic credentials as the WebUI's /sdapi/v1 routes (modules/api/api.py, v1.10.1
and Forge: Api.add_api_route adds Api.auth as a dependency when --api-auth is set). The tab itself
needs neither route (javascript/trainplan.js reads the run's task id from the page).

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

from typing import Any, Dict, List, Optional

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
    from ..ui.gradio_endpoints import describe
    describe(demo)  # gradio 4 (Forge): the tab's events described to the browser client, with or without --api
    from fastapi import Body
    from fastapi.responses import JSONResponse
    from modules import shared
    opts = shared.cmd_opts
    if not (getattr(opts, "api", False) or getattr(opts, "nowebui", False)):
        return

    def plan_route(inputs: Dict[str, Any] = Body(default={})):
        result = plan_json(inputs)
        return JSONResponse(result, status_code=422 if result["errors"] else 200)

    guard = auth_dependencies(getattr(opts, "api_auth", None))
    app.add_api_route("/sd_trainplan/plan", plan_route, methods=["POST"], dependencies=guard)
    app.add_api_route("/sd_trainplan/train", train_status, methods=["GET"], dependencies=guard)


def credentials(api_auth: Optional[str]) -> Dict[str, str]:
    """--api-auth "user:pass,user2:pass2" as the WebUI reads it (Api.__init__)."""
    out: Dict[str, str] = {}
    for pair in (api_auth or "").split(","):
        if pair:
            user, password = pair.split(":")
            out[user] = password
    return out


def auth_dependencies(api_auth: Optional[str]) -> List[Any]:
    """[] without --api-auth; else the WebUI's check (Api.auth): HTTP Basic, compared in constant time,
    401 with WWW-Authenticate otherwise."""
    if not api_auth:
        return []
    from secrets import compare_digest

    from fastapi import Depends, HTTPException
    from fastapi.security import HTTPBasic
    allowed = credentials(api_auth)

    def auth(creds=Depends(HTTPBasic())):  # no annotation: this module's are strings FastAPI could not resolve
        if creds.username in allowed and compare_digest(creds.password, allowed[creds.username]):
            return True
        raise HTTPException(status_code=401, detail="Incorrect username or password",
                            headers={"WWW-Authenticate": "Basic"})
    return [Depends(auth)]
