"""Thin async loops: each iterates one stream, calls `models/`, and sends to an output topic."""
