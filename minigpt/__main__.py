"""`python -m minigpt`: the same command line as the `minigpt` script."""

from minigpt.cli import main

raise SystemExit(main())
