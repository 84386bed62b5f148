"""Forge's `modules.shared` (modules/shared.py), reduced to what the bench's code paths read:
- `opts.emphasis`: backend/text_processing/classic_engine.py and host/forge_adapter.py read it;
  its default is Forge's, modules/shared_options.py: `"emphasis": OptionInfo("Original", ...)`;
- `opts.CLIP_stop_at_last_layers`: host/forge_session.py sets the engine's clip skip from it;
  default 1 (modules/shared_options.py);
- `sd_model`: the loaded engine, as modules/shared_items.py's `Shared.sd_model` property returns
  `modules.sd_models.model_data.get_sd_model()` (the bench sets it after its load);
- `state`: None, as before modules/shared_state.py's State exists (host/hooks.py: `note` checks it).
"""
from types import SimpleNamespace

opts = SimpleNamespace(emphasis="Original", CLIP_stop_at_last_layers=1)
sd_model = None
state = None
