"""Composition root: settings, the Faust app factory, web views and the `edgeml` CLI."""
