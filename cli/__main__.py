"""``python -m cli``: the ``yitu`` command without its console script."""

from cli.main import main

main()
