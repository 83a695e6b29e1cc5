"""Settings declared once: defaults read from the wings' dataclasses, configs built back from traits.

Shared by the extension's traits (`extension.LLMChat`) and the service construction
(`assembly.start_service`), which the extension and `jupyter llmchat serve` both use.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A setting of `LLMChat` that cannot be used; its message names it."""


def default_of(config: type, name: str) -> Any:
    """A setting's default, declared once: on the dataclass of the wing that uses it."""
    return next(f.default for f in dataclasses.fields(config) if f.name == name)


def from_traits(config: type[T], app: Any, **given: Any) -> T:
    """Build a config dataclass from the traits of the same names (no field copied by hand)."""
    values = {f.name: getattr(app, f.name) for f in dataclasses.fields(config) if f.name not in given and app.has_trait(f.name)}
    return config(**values, **given)
