"""The one error of model resolution: its message is shown to people as it is."""

from __future__ import annotations


class ModelError(RuntimeError):
    """A model reference that cannot be turned into a local GGUF file, and why."""
