"""UiHooks for the WebUI: the page's trainer runs on the WebUI's loaded model, in its queue.

- load_adapter: checks the loaded model (session.py, loaded_model.py) and wraps `shared.sd_model`
  as it is in the ldm adapter (adapter.py), or the sgm one for SDXL (sdxl_adapter.py).
- wrap_job: `modules.call_queue.wrap_gradio_gpu_call`, so a run holds the WebUI's queue lock
  (never beside txt2img), under a task id of its own that the page's progress bar follows
  (/internal/progress; the id is in GET /sd_trainplan/train).
- sinks: shared.state (job_count, job_no, textinfo, the preview image) and the run's status.
- should_stop: `shared.state.interrupted` (the WebUI's Interrupt, /sdapi/v1/interrupt).
- check: at Start, the token against the WebUI's loaded embeddings (token_names.py).
- after_job: the result into the WebUI's folders; an embedding is registered at once.
- restore: the loaded model left as it was (always: Stop, error and completion).
Forge's hooks (forge_hooks.py) build on this class: its own model, main thread and folders.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..ui.hooks import UiHooks
from . import exports, settings
from .session import RunOnLoadedModel
from .state_sink import JobStatus, StateSink, html_info

STATUS = JobStatus()  # one WebUI process, one queue: one run at a time

A1111_NOTICE = ("Training here uses the checkpoint loaded in the WebUI: no second copy, no conversion, no download."
                " Textual Inversion and LoRA never change its weights; Dreambooth trains them in place and puts"
                " them back when the run ends (the new checkpoint goes to models/Stable-diffusion). A run waits"
                " for txt2img/img2img to finish, and the WebUI's Interrupt stops it.")


class WebUiHost:
    def __init__(self, status: JobStatus = STATUS, log: Callable[[str], None] = print):
        self.status = status
        self.log = log
        self.run: Optional[RunOnLoadedModel] = None

    # --- model --------------------------------------------------------------------------------
    def load_adapter(self, cfg):
        """Check and prepare the loaded model (start_run), then wrap it (adapter_for); whatever
        fails after the run started puts the model back first."""
        if self.run is not None:  # a job that ended without restore(): put that model back first
            self.restore()
        run = self.start_run(cfg)
        run.start()
        self.run = run
        try:
            adapter = self.adapter_for(run)
            adapter.on_token = lambda tv: run.cleanups.append(lambda: adapter.remove_token(tv))
        except BaseException:
            self.restore()
            raise
        self.status.set(method=cfg.method, notes=list(run.notes))
        return adapter

    def start_run(self, cfg) -> RunOnLoadedModel:
        from modules import devices, lowvram, shared
        return RunOnLoadedModel(shared.sd_model, cfg, shared.cmd_opts, shared.opts, devices.device, lowvram,
                                note=self.note)

    def adapter_for(self, run: RunOnLoadedModel):
        from modules import devices, sd_hijack
        from modules.textual_inversion.textual_inversion import Embedding
        from .adapter import WebUiLdmAdapter
        from .sdxl_adapter import WebUiSgmAdapter
        model = run.model
        kind = WebUiSgmAdapter if hasattr(model, "conditioner") else WebUiLdmAdapter  # SDXL: sgm's DiffusionEngine
        return kind(model, devices.device, sd_hijack.model_hijack.embedding_db, Embedding,
                    source=loaded_source("the WebUI's loaded model", model))

    def restore(self) -> None:
        run, self.run = self.run, None
        if run is not None:
            run.finish()
        from modules import devices
        devices.torch_gc()

    # --- queue, progress, stop ----------------------------------------------------------------
    def wrap_job(self, fn: Callable) -> Callable:
        def job(*args, **kwargs):
            from modules import call_queue, progress
            box: Dict[str, Any] = {}

            def inside_queue(id_task, *a, **kw):  # wrap_gradio_gpu_call passes the task id first
                try:
                    box["result"] = self.call(fn, *a, **kw)
                except BaseException as e:  # noqa: BLE001 - raised again outside the WebUI's wrapper
                    box["error"] = e
                return [""]  # the WebUI's wrapper appends its timing HTML to the last output

            id_task = progress.create_task_id("sd_trainplan")
            self.status.queued(id_task)
            call_queue.wrap_gradio_gpu_call(inside_queue, extra_outputs=[None])(id_task, *args, **kwargs)
            if "error" in box:
                self.status.set(state="error", message=f"{type(box['error']).__name__}: {box['error']}")
                raise box["error"]
            if self.status.snapshot().get("state") in ("queued", "running"):
                self.status.set(state="done")
            return box.get("result")
        return job

    def call(self, fn: Callable, *args, **kwargs) -> Any:
        """Where the job runs once it holds the queue: here, in the job's thread (Forge: its main thread)."""
        return fn(*args, **kwargs)

    def should_stop(self) -> bool:
        from modules import shared
        return bool(getattr(shared.state, "interrupted", False))

    def note(self, text: str) -> None:
        self.log(f"[sd_trainplan] {text}")
        from modules import shared
        if shared.state is not None:
            shared.state.textinfo = html_info(html.escape(text))

    def check(self, cfg) -> List[str]:
        """At Start: the token against the loaded embeddings, as the WebUI's CLIP matches them."""
        from modules import sd_hijack, shared
        from .token_names import token_problems
        tokenize = getattr(getattr(shared.sd_model, "cond_stage_model", None), "tokenize", None)
        return token_problems(cfg, tokenize, sd_hijack.model_hijack.embedding_db)

    # --- results ------------------------------------------------------------------------------
    def after_job(self, cfg, result) -> Optional[Tuple[Path, str]]:
        src = getattr(result, "export_path", None)
        if not src:
            return None
        src = Path(src)
        if cfg.method == "ti":
            dest = exports.place(src, settings.folder("sd_trainplan_embeddings_dir"), exports.file_stem(cfg.token))
            if self.run is not None:  # the run's own embedding out first, then the file's in
                for clean in self.run.cleanups:
                    clean()
                self.run.cleanups = []
            name = self.register_embedding(dest)
            how = f"It is loaded: type {name} in a prompt."
        elif cfg.method == "lora":
            dest = exports.place(src, settings.folder("sd_trainplan_lora_dir"), cfg.name)
            exports.refresh_lora_list()
            how = f"Use <lora:{dest.stem}:1> in a prompt (refresh the Lora cards to see it)."
        else:
            from modules import shared
            config = exports.loaded_config(getattr(self.run, "model", None) or shared.sd_model)
            dest = exports.place_checkpoint(src, settings.folder("sd_trainplan_checkpoints_dir"), cfg.name, config)
            exports.refresh_checkpoints()
            beside = (f" Its config went with it ({dest.with_suffix('.yaml').name}, a copy of the loaded model's),"
                      " so the WebUI loads it as it loaded the original." if config else "")
            how = (f"The loaded model is the original again: choose {dest.name} in the checkpoint dropdown to use the"
                   f" new one.{beside}")
        message = f"saved to {dest}. {how}"
        self.status.set(exported=str(dest), message=message)
        self.note(message)
        return dest, how

    def register_embedding(self, path: Path) -> str:
        """The embedding file loaded into the WebUI's database: usable in txt2img at once."""
        from modules import sd_hijack
        return exports.register_embedding(path, sd_hijack.model_hijack.embedding_db)


def make_hooks(host: Optional[WebUiHost] = None) -> UiHooks:
    """The hooks for the WebUI this runs in (AUTOMATIC1111, or Forge: forge_hooks.py)."""
    from .webui import is_forge
    if is_forge():
        from .forge_hooks import make_forge_hooks
        return make_forge_hooks()
    return hooks_for(host or WebUiHost(), A1111_NOTICE, "AUTOMATIC1111")


def hooks_for(host: WebUiHost, notice: str, host_name: str) -> UiHooks:
    return UiHooks(load_adapter=host.load_adapter, wrap_job=host.wrap_job,
                   sinks=[host.status, StateSink(_shared_state, host.status)],
                   should_stop=host.should_stop, check=host.check, after_job=host.after_job, restore=host.restore,
                   output_dir=settings.folder("sd_trainplan_runs_dir"), notice=notice, can_train=True,
                   host_name=host_name, task_id=lambda: host.status.snapshot().get("task_id") or "")


def loaded_source(what: str, model) -> str:
    """What a run trains, for the log: `what` and the checkpoint's name."""
    info = getattr(model, "sd_checkpoint_info", None)
    return f"{what} {getattr(info, 'name_for_extra', '') or ''}".strip()


def _shared_state():
    from modules import shared
    return shared.state
