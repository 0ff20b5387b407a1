"""``python -m soma_schedulers``: the command-line interface."""

from .cli import main

raise SystemExit(main())
