import time

STARTED = time.monotonic()  # the run's log counts the imports from here (train_cli)

import os  # noqa: E402
import sys  # noqa: E402

from . import train_cli  # noqa: E402
from .cli import main  # noqa: E402

code = main()
if train_cli.ALL_WRITTEN:
    # A training run: every file it wrote is closed and on disk (fsynced). The interpreter's teardown
    # of torch, diffusers and the GPU context takes seconds and does nothing for the user: skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
