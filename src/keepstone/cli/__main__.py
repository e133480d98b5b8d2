"""``python -m keepstone.cli``."""

from keepstone.cli import main

main()
