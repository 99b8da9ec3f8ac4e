"""``python -m fastrnn``: the command line of :mod:`fastrnn.cli`."""

from .cli import main

raise SystemExit(main())
