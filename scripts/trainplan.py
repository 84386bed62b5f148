"""AUTOMATIC1111 / Forge entry point: the WebUI runs every file in scripts/ at start-up.

Thin on purpose: everything lives in the sd_trainplan package (sd_trainplan/host/ is the only
code that talks to the WebUI).
"""
import os
import sys

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:  # the WebUI puts an extension's folder on sys.path only while loading it
    sys.path.insert(0, _ROOT)

from sd_trainplan.host.webui import register  # noqa: E402

register()
