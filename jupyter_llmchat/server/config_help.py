"""Every `LLMChat` setting with its type, default and help, read from the traits themselves.

`jupyter server --help-all` cannot list them: Jupyter Server prints its help before it
looks for extensions, so no extension's settings ever appear there. `jupyter llmchat
config` prints this instead, in the same format, and it can never disagree with the code.
"""

from __future__ import annotations

import re
from typing import Any, TypedDict

from traitlets import Container, Enum, TraitType, Union

HIDDEN = re.compile(r"(^|_)(key|secret|token|password)$", re.I)  # defaults that may come from the environment
SHOWN_DEFAULT_CHARS = 160


class Setting(TypedDict):
    name: str
    type: str
    default: Any
    help: str


def settings() -> list[Setting]:
    """The configurable traits of `LLMChat` (not the generic ones of Jupyter's Application), in code order."""
    from .extension import LLMChat  # imports the server: only when asked

    app = LLMChat()  # unconfigured: its values are the defaults, dynamic ones included
    own = [cls for cls in reversed(LLMChat.__mro__) if cls.__module__.startswith("jupyter_llmchat")]
    traits = LLMChat.class_traits(config=True)
    names = list(dict.fromkeys(name for cls in own for name in vars(cls) if name in traits))
    return [
        {"name": name, "type": type_name(traits[name]), "default": _default(app, name), "help": traits[name].help or ""}
        for name in names
    ]


def type_name(trait: TraitType) -> str:
    """`Int`, `List[Unicode]`, `Enum('llama'|'openai')`: what the value must be."""
    name = type(trait).__name__
    if isinstance(trait, Enum):
        name += "(" + "|".join(repr(value) for value in trait.values or ()) + ")"
    elif isinstance(trait, Union):
        name = "|".join(type_name(member) for member in trait.trait_types)
    elif isinstance(trait, Container) and getattr(trait, "_trait", None) is not None:
        name += f"[{type_name(trait._trait)}]"
    return name + ("|None" if trait.allow_none and not name.endswith("None") else "")


def format_settings(items: list[Setting]) -> str:
    """The `--help-all` layout: `--LLMChat.name=<Type>`, the help indented, then the default."""
    lines = ["LLMChat settings: `c.LLMChat.<name> = …` in jupyter_server_config.py, or `--LLMChat.<name>=…`", ""]
    for item in items:
        lines.append(f"--LLMChat.{item['name']}=<{item['type']}>")
        lines += [f"    {line}" for line in (item["help"] or "(no help)").splitlines()]
        lines.append(f"    Default: {_shown(item['default'])}")
    return "\n".join(lines)


def _default(app: Any, name: str) -> Any:
    value = getattr(app, name)
    if HIDDEN.search(name) and value:
        return "(hidden)"
    return value


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_DEFAULT_CHARS else text[: SHOWN_DEFAULT_CHARS - 1] + "…"
