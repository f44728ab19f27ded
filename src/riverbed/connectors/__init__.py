"""Connectors: sources and sinks, one module each."""

from riverbed.connectors._uri import resolve_sink, resolve_source

__all__ = ["resolve_sink", "resolve_source"]
