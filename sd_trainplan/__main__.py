import time

STARTED = time.monotonic()  # the run's log counts the imports from here (train_cli)

from .cli import main  # noqa: E402

raise SystemExit(main())
