"""Inside the WebUI (AUTOMATIC1111 1.10 and Forge): the only code that imports the WebUI's
`modules.*` (and Forge's `backend.*`).

- webui.py       registers the tab, the settings and the HTTP routes (scripts/trainplan.py calls it)
- tab.py         the Train Planner tab: the planner (and trainer) page plus the WebUI's own pieces
- hooks.py       UiHooks for this host: the loaded model, the WebUI's queue, shared.state, Stop
- session.py     one run on the loaded model: checks first, and everything it changes put back
- loaded_model.py the checks: SD1/SD2 only, lowvram/medvram, half precision, fp8, merged LoRA
- adapter.py     the ldm adapter over `shared.sd_model`, Textual Inversion through `embedding_db`
- embedding_tokens.py a run's TI embedding in the host's database (both hosts): refused if taken,
                 registered, kept registered, taken out
- medvram.py     --medvram: hold what training needs on the GPU for the run, put the swapping back
- exports.py     results into the WebUI's folders (embeddings, models/Lora, models/Stable-diffusion)
- state_sink.py  training events -> shared.state (the WebUI's progress bar) and /sd_trainplan/train
- api.py         /sd_trainplan/plan and /sd_trainplan/train
- settings.py    the tab's settings (output folders)
Forge, beside them (forge_hooks.make_forge_hooks is what hooks.make_hooks gives there):
- forge_hooks.py    UiHooks for Forge: its loaded model, its queue and main thread, its folders
- forge_session.py  one run on Forge's model: checks, LoRA merge out, parts loaded, made trainable, put back
- forge_model.py    the checks: loaded yet, SD1.x engine, no low-bit storage, a discrete schedule
- forge_tensors.py  Forge's inference tensors swapped for plain ones for a run, and back
- forge_adapter.py  the model adapter over Forge's text engine, VAE, predictor and UNet

Every import of `modules` happens inside a function, so importing this package outside the
WebUI does nothing (the tests bring a small stand-in of `modules`).
"""
