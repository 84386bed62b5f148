"""What a host changes in the Train Planner page: the one seam between the page and the WebUI.

The page (ui/) never imports the WebUI's `modules.*`. Standalone, the defaults apply: a job
loads the model named in its config and runs in a background thread. Inside the WebUI,
sd_trainplan/host/ fills these hooks: the model is the one the WebUI has loaded, the job runs
under the WebUI's queue (`wrap_gradio_gpu_call`, so never beside txt2img), progress goes to
`shared.state` too, and a finished embedding is registered at once.

Contract (both the page and the host code against it):
- load_adapter(cfg) -> ModelAdapter, or None to load cfg.model (standalone: 'tiny' or a path).
- wrap_job(fn) -> fn: runs around the whole job, in the job's thread (e.g. the WebUI's queue).
- sinks: extra event sinks (train.events.Event) fed with every event of every job.
- should_stop() -> bool: polled with the page's own Stop (e.g. shared.state.interrupted).
- check(cfg) -> ['field: problem', ...]: what the host knows is wrong before anything starts (e.g. a
  token that is already the name of one of the WebUI's loaded embeddings); shown beside the field.
- after_job(cfg, result): called when a job ends with an exported file (e.g. reload embeddings); may
  return where it put the file, or (where, a note for the page: how to use it, what went with it).
- restore(): called when a job ends in any way (e.g. put the loaded model's weights back).
- task_id() -> str: the host's id for the job now running inside wrap_job (the WebUI's task id:
  the page puts it on the job's progress block, where javascript/trainplan.js finds it).
- output_dir: default output folder for runs; notice: an HTML note shown beside the Start buttons
  (the Train and LR range test tabs), e.g. what a run does to the WebUI's loaded model;
  can_train: False hides Start.

In the WebUI, javascript/trainplan.js puts a run into the WebUI's own progress bar: a running
job's progress block carries `data-task` (from task_id), and the script follows each new one.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional


def _identity(fn: Callable) -> Callable:
    return fn


@dataclass
class UiHooks:
    load_adapter: Optional[Callable[[Any], Any]] = None
    wrap_job: Callable[[Callable], Callable] = _identity
    sinks: List[Callable[[Any], None]] = field(default_factory=list)
    should_stop: Callable[[], bool] = lambda: False
    check: Optional[Callable[[Any], List[str]]] = None
    after_job: Optional[Callable[[Any, Any], None]] = None
    restore: Optional[Callable[[], None]] = None
    task_id: Optional[Callable[[], str]] = None
    output_dir: str = "runs"
    notice: str = ""
    can_train: bool = True
    host_name: str = "standalone"


STANDALONE = UiHooks()
