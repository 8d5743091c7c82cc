"""``python -m bgone.cli``: the ``bgone`` command."""

from bgone.cli import main

main()
