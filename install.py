"""WebUI installer hook (AUTOMATIC1111 and Forge run it at each launch, in its own process).

Rule: add only what is missing, never upgrade or downgrade a package the WebUI pinned.
The planner is pure Python, and the trainer uses only what the WebUI already has
(torch, safetensors, numpy, PIL, gradio), so a normal launch installs nothing at all.
"""
import importlib.util

NEEDED = ("torch", "safetensors", "numpy", "PIL", "gradio")


def missing_modules():
    return [m for m in NEEDED if importlib.util.find_spec(m) is None]


if __name__ == "__main__" or __name__ == "install":
    gone = missing_modules()
    if gone:
        # The WebUI itself needs these; installing them here would fight its own installer.
        print(f"[sd_trainplan] the WebUI environment lacks {', '.join(gone)}; the Train Planner tab needs them."
              " Nothing was installed: repair the WebUI's own environment.")
