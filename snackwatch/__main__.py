"""Entry point for `python -m snackwatch`."""

from snackwatch.cli import main

raise SystemExit(main())
