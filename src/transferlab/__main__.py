"""`python -m transferlab ...` runs the command-line interface."""

from transferlab.cli import main

raise SystemExit(main())
