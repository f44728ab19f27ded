"""``python -m riverbed.cli`` runs the command line."""

from riverbed.cli.app import main

main()
