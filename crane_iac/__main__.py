"""``python -m crane_iac`` is the ``crane`` command."""

from crane_iac.cli import main

main()
