"""`python -m edgeml.app ...` is the `edgeml` CLI (`python -m edgeml.app worker` runs a worker)."""

from edgeml.app.console import main

main()
