"""`python -m hpcft.launcher` is the `hpcft` command."""

from hpcft.launcher.cli import main

raise SystemExit(main())
