"""``python -m runner``: the CLI."""

from runner.cli import main

raise SystemExit(main())
