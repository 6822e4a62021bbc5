"""``python -m explore.cli``: the ``explore`` app."""

from explore.cli import main

main()
