"""`python -m app ...` is the `edgeml` CLI (so `python -m app worker` runs a worker)."""

from app.cli import main

main()
