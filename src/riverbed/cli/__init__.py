"""The ``riverbed`` command line."""

from riverbed.cli.app import app, main

__all__ = ["app", "main"]
