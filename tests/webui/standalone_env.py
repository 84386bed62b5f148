"""The standalone environment (.venv: diffusers), which tests here run their standalone halves in: the
WebUI-pinned environment they run in has no diffusers."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STANDALONE = ROOT / ".venv" / "bin" / "python"


def run_standalone(script: str, *args, timeout: int = 600) -> None:
    """tests/webui/`script` with `args` in the standalone environment, offline; fails with its output."""
    if not STANDALONE.exists():
        pytest.fail(f"needs the standalone environment with diffusers ({STANDALONE}): `make test` builds it")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([str(STANDALONE), str(Path(__file__).with_name(script)), *map(str, args)], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
