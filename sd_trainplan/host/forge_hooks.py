"""UiHooks for Forge: the page's trainer runs on the model Forge has loaded, in its queue, on its
main thread (Forge's hooks.py).

- load_adapter: checks and prepares the loaded model (forge_session.py, forge_model.py) and wraps
  it in the Forge adapter (forge_adapter.py).
- wrap_job: `modules.call_queue.wrap_gradio_gpu_call` (the queue lock txt2img takes, a task id the
  page's progress bar follows) around Forge's main thread (`modules_forge.main_thread`), where
  txt2img and img2img run their work: the whole job runs there.
- sinks, should_stop, restore, after_job: as in AUTOMATIC1111 (hooks.WebUiHost): the result into
  the WebUI's folders, usable at once; an embedding is registered in Forge's text-engine database
  (and the Textual Inversion cards).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional

from ..ui.hooks import UiHooks
from .forge_session import RunOnForgeModel, clear_prompt_cache
from .hooks import WebUiHost, hooks_for, loaded_source

FORGE_NOTICE = ("Training here uses the SD1.x checkpoint Forge has loaded: no second copy, no conversion, no"
                " download (Forge loads a checkpoint at its first generation: generate one image first)."
                " Textual Inversion and LoRA never change its weights; Dreambooth trains them in place and puts"
                " them back when the run ends (the new checkpoint goes to models/Stable-diffusion). The embedding"
                " is usable in txt2img at once, the LoRA as &lt;lora:NAME:1&gt;. A run waits for txt2img/img2img to"
                " finish, and Interrupt stops it. SDXL and the low-bit (fp8, nf4, gguf) UNet storage are not"
                " trained here yet.")


class ForgeHost(WebUiHost):
    # --- model --------------------------------------------------------------------------------
    # load_adapter is WebUiHost's: these two are Forge's
    def start_run(self, cfg) -> RunOnForgeModel:
        from modules import shared
        return RunOnForgeModel(shared.sd_model, cfg, shared.opts, note=self.note)

    def adapter_for(self, run: RunOnForgeModel):
        from .forge_adapter import ForgeAdapter
        return ForgeAdapter(run.engine, run.device, source=loaded_source("Forge's loaded model", run.engine))

    # --- queue ----------------------------------------------------------------------------------
    def call(self, fn: Callable, *args, **kwargs) -> Any:
        """On Forge's main thread, as txt2img's work runs (modules/txt2img.py). Its task runner keeps
        only the result and prints exceptions, so the outcome comes back in a box."""
        from modules_forge import main_thread
        box: Dict[str, Any] = main_thread.run_and_wait_result(_boxed, fn, args, kwargs)
        if "error" in box:
            raise box["error"]
        return box.get("result")

    def check(self, cfg):
        """At Start, beside the fields, before a job is queued: a model is loaded (before Forge's
        first generation `shared.sd_model` is its placeholder, modules/sd_models.py FakeInitialModel:
        the same refusal load_adapter makes, said beside the Model field), and the token against the
        embeddings Forge's text engine has loaded, matched as its engine matches them in prompts
        (backend/text_processing: tokenize, find_embedding_at_position)."""
        from modules import shared
        from .forge_model import NOT_LOADED
        from .token_names import token_problems
        model = shared.sd_model
        if getattr(model, "forge_objects", None) is None:
            return [NOT_LOADED]
        engine = getattr(model, "text_processing_engine", None)
        return token_problems(cfg, getattr(engine, "tokenize", None), getattr(engine, "embeddings", None))

    # --- results ------------------------------------------------------------------------------
    def register_embedding(self, path: Path) -> str:
        """Usable in the next txt2img: loaded into the text engine's database (which reads its folder
        only when the model loads), its folder added so a model reload finds it again, the txt2img
        prompt cache cleared; and listed in the Textual Inversion cards (a separate database that does
        not feed generation: modules/ui_extra_networks_textual_inversion.py). Returns the name to type."""
        import os
        from modules import shared
        db = shared.sd_model.text_processing_engine.embeddings
        folder = os.path.abspath(str(path.parent))
        if folder not in {os.path.abspath(p) for p in db.embedding_dirs}:
            db.add_embedding_dir(folder)
        db.load_from_file(str(path), path.name)
        clear_prompt_cache()
        try:
            from modules import ui_extra_networks_textual_inversion as cards
            if folder not in {os.path.abspath(p) for p in cards.embedding_db.embedding_dirs}:
                cards.embedding_db.add_embedding_dir(folder)
            cards.embedding_db.load_textual_inversion_embeddings(force_reload=True, sync_with_sd_model=False)
        except Exception as e:  # noqa: BLE001 - the cards are a listing: generation already has the embedding
            self.note(f"the Textual Inversion cards were not refreshed: {e}")
        return path.stem


def _boxed(fn: Callable, args, kwargs) -> Dict[str, Any]:
    try:
        return {"result": fn(*args, **kwargs)}
    except BaseException as e:  # noqa: BLE001 - raised again on the caller's thread
        return {"error": e}


def make_forge_hooks(host: Optional[ForgeHost] = None) -> UiHooks:
    return hooks_for(host or ForgeHost(), FORGE_NOTICE, "Forge")
