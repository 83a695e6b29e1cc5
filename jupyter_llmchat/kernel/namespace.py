"""The kernel's variables, for `@name` in the widget's message box.

Typing `@` in the box asks the kernel (a widget custom message) for its variables: names,
kinds and sizes (`context.summarize`: type, shape and length only, so listing a namespace
with a 10 GB frame in it costs what listing a small one does). Sending a question that
mentions `@df` asks the kernel to describe `df` (`context.describe_all`), and the
description goes with the question as an attachment, as `ask(context=[df])` sends it.

The front end only ever names variables: a name is looked up in the namespace dict, never
evaluated, and a name that is not a listed variable stays plain text. Where the namespace
comes from: IPython's `user_ns` (Jupyter, VS Code, Colab), else the globals of marimo's
running notebook (`marimo._runtime.context.get_context().globals`, the dict its cells run
in: marimo has no public API for it), else none (nothing is listed).
"""

from __future__ import annotations

import itertools
import sys
import types
from typing import Any, Iterable, Mapping, TypedDict

from .context import MAX_ATTACHMENTS, MAX_LABEL_CHARS, describe_all, last_exception, summarize

MAX_VARIABLES = 200  # listed per request; the front end asks again with what the user typed
MAX_NAME_CHARS = 100
MAX_NAMES = 32  # mentions looked at per question (at most MAX_ATTACHMENTS are attached)
ERROR_NAME = "error"  # `@error`: the last exception (`last_error`), unless a variable has that name

# IPython's own names, in case a shell does not mark them hidden.
_IPYTHON_NAMES = frozenset({"In", "Out", "exit", "quit", "get_ipython"})
# Not data: code and the things code is made of.
_NOT_DATA = (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType, types.MethodType)


class Variable(TypedDict):
    """One entry of the `@` list."""

    name: str
    kind: str  # as an attachment's kind: "dataframe", "ndarray", "error", "object"
    label: str  # type and size: "DataFrame 200×5", "list, 12 items"


def user_namespace() -> tuple[Mapping[str, Any], Mapping[str, Any]] | None:
    """(namespace, hidden names) of the running notebook, or None outside one."""
    ipython = _ipython()
    if ipython is not None:
        return ipython.user_ns, getattr(ipython, "user_ns_hidden", {}) or {}
    marimo_globals = _marimo_globals()
    if marimo_globals is not None:
        return marimo_globals, {}
    return None


def last_error() -> BaseException | None:
    """The exception `@error` and "Ask about the last error" mean: IPython's last one
    (`context.last_exception`), else in marimo, which keeps none in `sys`, the exception of
    a cell in error (the lowest in the notebook when several are)."""
    exc = last_exception()
    return exc if exc is not None else _marimo_error()


def list_variables(
    namespace: Mapping[str, Any], hidden: Mapping[str, Any] | None = None, prefix: str = "", limit: int = MAX_VARIABLES
) -> tuple[list[Variable], bool]:
    """The variables whose name starts with `prefix` (any case), by name; True when cut at `limit`."""
    hidden = hidden or {}
    prefix = prefix.lower()
    names = sorted(
        (
            name
            for name, value in list(namespace.items())
            if isinstance(name, str) and name.lower().startswith(prefix) and is_variable(name, value, hidden)
        ),
        key=lambda name: (name.lower(), name),
    )
    if ERROR_NAME not in names and ERROR_NAME.startswith(prefix) and last_error() is not None:
        names.insert(0, ERROR_NAME)  # a variable named `error` wins (it is then in `names`)
    listed = [_entry(name, namespace, hidden) for name in names[:limit]]
    return listed, len(names) > limit


def is_variable(name: Any, value: Any, hidden: Mapping[str, Any] | None = None) -> bool:
    """What `@` lists: public names of data, not modules, functions, classes or the shell's own."""
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("_") or len(name) > MAX_NAME_CHARS:
        return False
    if name in _IPYTHON_NAMES or (hidden is not None and name in hidden and hidden[name] is value):
        return False
    try:
        return not isinstance(value, _NOT_DATA)
    except Exception:  # an object whose __class__ raises: still not listed as data
        return False


def describe_mentions(namespace: Mapping[str, Any], hidden: Mapping[str, Any], names: Iterable[Any]) -> dict[str, Any]:
    """The attachments for the variables among `names`, in order, within one budget.

    `attached` names what became an attachment; `skipped`, variables beyond the protocol's
    MAX_ATTACHMENTS per question (they stay plain text). Other names are not variables.
    """
    chosen: list[tuple[str, Any]] = []
    skipped: list[str] = []
    for name in _distinct_names(names):
        obj = _lookup(namespace, hidden, name)
        if obj is _MISSING:
            continue
        if len(chosen) == MAX_ATTACHMENTS:
            skipped.append(name)
        else:
            chosen.append((name, obj))
    attachments = describe_all(obj for _, obj in chosen)
    for (name, obj), attachment in zip(chosen, attachments):
        if not (name == ERROR_NAME and obj is last_error()):
            attachment["label"] = f"{name} ({attachment['label']})"[:MAX_LABEL_CHARS]
    return {"attachments": attachments, "attached": [name for name, _ in chosen], "skipped": skipped}


# -- the widget's custom messages


def variables_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    """`{kind: "variables", id, prefix}` → `{kind: "variables", id, items, truncated}`."""
    prefix = request.get("prefix")
    prefix = prefix[:MAX_NAME_CHARS] if isinstance(prefix, str) else ""
    items: list[Variable] = []
    truncated = False
    try:
        found = user_namespace()
        if found:
            items, truncated = list_variables(*found, prefix=prefix)
    except Exception:  # a namespace that cannot be read (changed while listed…): an empty list, never a dead popup
        items, truncated = [], False
    return {"kind": "variables", "id": _request_id(request), "items": items, "truncated": truncated}


def describe_reply(request: Mapping[str, Any]) -> dict[str, Any]:
    """`{kind: "describe", id, names}` → `{kind: "described", id, attachments, attached, skipped}`."""
    names = request.get("names")
    described: dict[str, Any] = {"attachments": [], "attached": [], "skipped": []}
    try:
        found = user_namespace()
        if found and isinstance(names, list):
            described = describe_mentions(*found, names)
    except Exception:  # the question then goes without attachments rather than not at all
        pass
    return {"kind": "described", "id": _request_id(request), **described}


# -- helpers

_MISSING = object()


def _entry(name: str, namespace: Mapping[str, Any], hidden: Mapping[str, Any]) -> Variable:
    obj = _lookup(namespace, hidden, name)
    kind, label = summarize(obj)
    return {"name": name, "kind": kind, "label": label[:MAX_LABEL_CHARS]}


def _lookup(namespace: Mapping[str, Any], hidden: Mapping[str, Any], name: str) -> Any:
    """The variable `name` (a dict lookup, never an evaluation), the last exception for
    `@error`, or _MISSING."""
    value = namespace.get(name, _MISSING)
    if value is not _MISSING and is_variable(name, value, hidden):
        return value
    if name == ERROR_NAME:
        exc = last_error()
        return _MISSING if exc is None else exc
    return _MISSING


def _distinct_names(names: Iterable[Any]) -> list[str]:
    seen: dict[str, None] = {}
    for name in itertools.islice(names, MAX_NAMES):
        if isinstance(name, str) and name.isidentifier() and len(name) <= MAX_NAME_CHARS:
            seen.setdefault(name)
    return list(seen)


def _request_id(request: Mapping[str, Any]) -> str:
    value = request.get("id")
    return value[:128] if isinstance(value, str) else ""


def _ipython() -> Any:
    if "IPython" not in sys.modules:
        return None
    try:
        from IPython import get_ipython

        return get_ipython()
    except Exception:  # an IPython too broken to ask: no namespace, nothing listed
        return None


def _marimo_error() -> BaseException | None:
    if "marimo" not in sys.modules:
        return None
    try:
        from marimo._runtime.context import get_context

        cells = list(get_context().graph.cells.values())
    except Exception:  # not in a marimo kernel (or marimo moved it): no error to offer
        return None
    for cell in reversed(cells):
        exc = getattr(cell, "exception", None)
        if isinstance(exc, BaseException):
            return exc
    return None


def _marimo_globals() -> Mapping[str, Any] | None:
    if "marimo" not in sys.modules:
        return None
    try:
        from marimo._runtime.context import get_context

        found = get_context().globals
    except Exception:  # not in a marimo kernel (or marimo moved it): nothing listed
        return None
    return found if isinstance(found, Mapping) else None
