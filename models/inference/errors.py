"""The inference engine's errors: one-line subclasses of the project's root error."""

from __future__ import annotations

from edgeml.topics.errors import EdgeMLError

__all__ = ["BackendError", "BackendOverloaded", "InferenceError", "TensorError"]


class InferenceError(EdgeMLError):
    """Something about an inference call, a backend or a pool is wrong."""


class TensorError(InferenceError, ValueError):
    """A tensor (or an Open Inference Protocol body) is malformed: bad shape, datatype or data."""

    exit_code = 2


class BackendError(InferenceError):
    """A backend could not answer: an HTTP error, a bad answer, a model that raised."""


class BackendOverloaded(BackendError):
    """A backend's bounded queue is full: the call fails at once instead of waiting."""
