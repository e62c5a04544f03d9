"""``python -m freshet``: the CLI."""

from freshet.cli import main

raise SystemExit(main())
