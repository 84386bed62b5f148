"""Mirrors modules/shared.py (v1.10.1): the globals host/ reads (cmd_opts, opts, state, sd_model)
with the command-line flags and options the mirrored code consults, at the WebUI's defaults."""
import argparse
import os

from modules import options, paths
from modules.options import OptionInfo  # noqa: F401  (shared.OptionInfo, as in the WebUI)


def default_cmd_opts():
    return argparse.Namespace(
        lowvram=False, medvram=False, medvram_sdxl=False, no_half=False, no_half_vae=False, precision="autocast",
        embeddings_dir=os.path.join(paths.data_path, "embeddings"), ckpt_dir=None,
        lora_dir=os.path.join(paths.models_path, "Lora"), freeze_settings=False)


def default_opts():
    labels = {
        "emphasis": OptionInfo("Original"), "CLIP_stop_at_last_layers": OptionInfo(1),
        "comma_padding_backtrack": OptionInfo(20), "use_old_emphasis_implementation": OptionInfo(False),
        "textual_inversion_add_hashes_to_infotext": OptionInfo(True),
        "textual_inversion_print_at_load": OptionInfo(False), "lora_functional": OptionInfo(False),
        "live_previews_image_format": OptionInfo("png"), "memmon_poll_rate": OptionInfo(8),
        "profiling_enable": OptionInfo(False), "profiling_filename": OptionInfo("trace.json"),
        "fp8_storage": OptionInfo("Disable"), "sdxl_clip_l_skip": OptionInfo(False),
    }
    return options.Options(labels)


cmd_opts = default_cmd_opts()
opts = default_opts()
state = None  # set below (shared_state imports this module)
sd_model = None
parallel_processing_allowed = True


class _NoMemMon:
    disabled = True


mem_mon = _NoMemMon()


def reset():
    """Fresh globals for a test (the WebUI builds them once at start-up)."""
    global cmd_opts, opts, state, sd_model
    from modules import shared_state
    cmd_opts, opts, state, sd_model = default_cmd_opts(), default_opts(), shared_state.State(), None


from modules import shared_state  # noqa: E402

state = shared_state.State()
