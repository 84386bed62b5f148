"""Run test code in a fresh interpreter and read back what it found: the Triton tests need one, since
TRITON_INTERPRET (and SD_TRAINPLAN_TRITON, read once) must be set before the first import."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Optional


def child_result(code: str, *args, timeout: int = 600, **env: Optional[str]) -> dict:
    """`python -c code args...` with `env` over this process's environment (None removes a variable);
    the JSON the code printed after "RESULT ". A failed child fails the test with its output."""
    merged = {k: v for k, v in {**os.environ, **env}.items() if v is not None}
    proc = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, env=merged,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
