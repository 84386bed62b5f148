"""Inside the WebUI (AUTOMATIC1111 1.10, and Forge for the planner): the only code that imports
the WebUI's `modules.*`.

- webui.py       registers the tab, the settings and the HTTP routes (scripts/trainplan.py calls it)
- tab.py         the Train Planner tab: the planner (and trainer) page plus the WebUI's own pieces
- hooks.py       UiHooks for this host: the loaded model, the WebUI's queue, shared.state, Stop
- session.py     one run on the loaded model: checks first, and everything it changes put back
- loaded_model.py the checks: SD1/SD2 only, lowvram/medvram, half precision, fp8, merged LoRA
- adapter.py     the ldm adapter over `shared.sd_model`, Textual Inversion through `embedding_db`
- medvram.py     --medvram: hold what training needs on the GPU for the run, put the swapping back
- exports.py     results into the WebUI's folders (embeddings, models/Lora, models/Stable-diffusion)
- state_sink.py  training events -> shared.state (the WebUI's progress bar) and /sd_trainplan/train
- api.py         /sd_trainplan/plan and /sd_trainplan/train
- settings.py    the tab's settings (output folders)

Every import of `modules` happens inside a function, so importing this package outside the
WebUI does nothing (the tests bring a small stand-in of `modules`).
"""
