"""``python -m loopml.cli``."""

from loopml.cli import main

main()
