"""Context from the kernel: compact text descriptions of live objects, for the model.

The chat server cannot see the kernel, but the kernel can describe what it holds:
`ask(room, question, context=[df, err])` sends these descriptions with the question
(Generate `attachments`). They are short on purpose — a small model has a small context —
and say so wherever something was cut.

Nothing heavy is imported here: a pandas or polars frame or a NumPy array is recognised
through the module of its type, which is already loaded whenever such an object exists.
"""

from __future__ import annotations

import reprlib
import sys
import traceback
from types import TracebackType
from typing import Any, Iterable, TypedDict

CHARS_PER_TOKEN = 4  # rough, for English and code; the budget is a guide, not a tokenizer count
DEFAULT_BUDGET_TOKENS = 1500
DEFAULT_BUDGET_CHARS = DEFAULT_BUDGET_TOKENS * CHARS_PER_TOKEN
MAX_ATTACHMENTS = 8  # protocol limits (docs/protocol.md: Generate attachments)
MAX_TEXT_CHARS = 16 * 1024
MAX_LABEL_CHARS = 200
HEAD_ROWS = 5
MAX_COLUMNS = 40  # columns listed with their dtype
TABLE_COLUMNS = 12  # columns shown in the first rows
CELL_CHARS = 24
TRACEBACK_FRAMES = 12  # innermost frames kept per exception


class Attachment(TypedDict):
    """One described object, as sent in Generate `attachments`."""

    kind: str  # "dataframe", "ndarray", "error" or "object"
    label: str  # what it is at a glance: "DataFrame 200×5", "ZeroDivisionError"
    text: str  # the description the model reads


def describe(obj: Any, budget_chars: int = DEFAULT_BUDGET_CHARS) -> Attachment:
    """A compact description of `obj` whose text fits `budget_chars` characters."""
    kind, label, text = _raw(obj)
    return _attachment(kind, label, text, budget_chars)


def summarize(obj: Any) -> tuple[str, str]:
    """(kind, label) of `obj` from its type, shape and length only: cheap whatever its size.

    The same kind and label as `describe` gives, without building any text: the widget lists
    a kernel's variables this way. Never fails (a library's surprise gives the type's name).
    """
    try:
        return _kind_label(obj)
    except Exception:
        return "object", _safe_type_name(obj)


def last_exception() -> BaseException | None:
    """The exception of the last failed cell: IPython keeps it in `sys.last_exc` (3.12+) /
    `sys.last_value`, which outlive the cell (unlike `sys.exc_info()`)."""
    exc = getattr(sys, "last_exc", None)
    if not isinstance(exc, BaseException):
        exc = getattr(sys, "last_value", None)
    return exc if isinstance(exc, BaseException) else None


def describe_last_error(budget_chars: int = DEFAULT_BUDGET_CHARS) -> Attachment | None:
    """The exception of the last failed cell (IPython keeps it in `sys.last_*`), or None."""
    exc = last_exception()
    if exc is None:
        return None
    tb = exc.__traceback__ if exc is getattr(sys, "last_exc", None) else getattr(sys, "last_traceback", None)
    return _attachment("error", type(exc).__name__, _error_text(exc, tb or exc.__traceback__), budget_chars)


def describe_all(objs: Iterable[Any], budget_chars: int = DEFAULT_BUDGET_CHARS) -> list[Attachment]:
    """Describe several objects within one total budget (the sum of their texts).

    When they do not fit, the largest parts are cut first, down to a common size, so a
    short description is never sacrificed to a long one; each cut part says so.
    """
    objs = list(objs)
    if len(objs) > MAX_ATTACHMENTS:
        raise ValueError(f"at most {MAX_ATTACHMENTS} context objects per question, got {len(objs)}")
    if not objs:
        return []
    raws = [_raw(obj) for obj in objs]
    cap = _common_cap([min(len(text), MAX_TEXT_CHARS) for _, _, text in raws], budget_chars)
    return [_attachment(kind, label, text, cap) for kind, label, text in raws]


def fit(text: str, budget_chars: int, *, tail: bool = False) -> str:
    """`text` cut to at most `budget_chars`, saying how much was left out.

    The beginning is kept (at a line break when one is near); with `tail`, the end is
    kept too — a traceback's innermost frames and message matter most.
    """
    if len(text) <= budget_chars:
        return text
    # The marker's length depends on the number it shows: size it for the largest.
    room = max(budget_chars - len(_marker(len(text), True, True)), 0)
    keep_end = room * 2 // 3 if tail else 0
    head = _at_line_break(text[: room - keep_end])
    end = _from_line_break(text[len(text) - keep_end :]) if keep_end else ""
    marker = _marker(len(text) - len(head) - len(end), bool(head) and not head.endswith("\n"), bool(end))
    return head + marker + end


# -- kinds


def _raw(obj: Any) -> tuple[str, str, str]:
    """(kind, label, full text) of one object; a library's surprise falls back to its repr,
    and a surprise there to a line saying the object could not be described.

    Describing never makes a question fail (`_attachment` makes the text valid UTF-8). Only
    exceptions are caught: a `__repr__` that never returns is not bounded in time here (the
    kernel's interrupt stops it; docs/context.md)."""
    try:
        return _raw_by_kind(obj)
    except Exception:  # describing must never be why a question fails
        try:
            return "object", _safe_type_name(obj), _object_text(obj)
        except Exception as error:
            return "object", _safe_type_name(obj), f"{_type_name(obj)}: could not be described ({_failure(error)})"


def _raw_by_kind(obj: Any) -> tuple[str, str, str]:
    kind, label = _kind_label(obj)
    if kind == "error":
        return kind, label, _error_text(obj, obj.__traceback__)
    if kind == "dataframe":
        return kind, label, _frame_text(obj) if _is_frame(obj) else _series_text(obj)
    if kind == "ndarray":
        return kind, label, _array_text(obj)
    return kind, label, _object_text(obj)


def _kind_label(obj: Any) -> tuple[str, str]:
    if isinstance(obj, BaseException):
        return "error", type(obj).__name__
    if _is_frame(obj):
        return "dataframe", _frame_label(obj)
    if _is_instance(obj, "pandas", "Series") or _is_instance(obj, "polars", "Series"):
        return "dataframe", _series_label(obj)
    if _is_instance(obj, "numpy", "ndarray"):
        return "ndarray", f"ndarray {obj.dtype} {tuple(obj.shape)}"
    return "object", _object_label(obj)


# Built-in types whose len() is a field read; a subclass's __len__ could be anything.
_ITEMS = (list, tuple, dict, set, frozenset)
_SIZES = {str: "chars", bytes: "bytes", bytearray: "bytes", **{kind: "items" for kind in _ITEMS}}


def _object_label(obj: Any) -> str:
    return type(obj).__name__ + _size(obj)


def _size(obj: Any) -> str:
    """", 12 items" for a built-in container, string or bytes; "" for anything else."""
    unit = _SIZES.get(type(obj))
    if not unit:
        return ""
    try:
        size = len(obj)
    except Exception:  # only exact built-in types get here, but describing never fails a question
        return ""
    return f", {size:,} {unit if size != 1 else unit[:-1]}"


def _safe_type_name(obj: Any) -> str:
    try:
        return type(obj).__name__
    except Exception:  # a type whose name lookup fails: still a label
        return "object"


def _frame_label(frame: Any) -> str:
    rows, columns = frame.shape
    return f"DataFrame {rows}×{columns}"


def _frame_text(frame: Any) -> str:
    rows, columns = frame.shape
    library = type(frame).__module__.split(".")[0]
    lines = [f"{library} DataFrame: {rows} rows × {columns} columns", "columns (dtype):"]
    names = [str(name) for name in frame.columns]
    dtypes = [str(dtype) for dtype in frame.dtypes]
    width = max((len(name) for name in names[:MAX_COLUMNS]), default=0)
    lines += [f"  {name:<{width}}  {dtype}" for name, dtype in zip(names[:MAX_COLUMNS], dtypes)]
    if columns > MAX_COLUMNS:
        lines.append(f"  … and {columns - MAX_COLUMNS} more columns")
    if rows:
        head = frame.head(HEAD_ROWS)
        shown = min(columns, TABLE_COLUMNS)
        if library == "pandas":
            header = ["", *names[:shown]]
            body = [[_cell(row[0]), *map(_cell, row[1 : shown + 1])] for row in head.itertuples(index=True, name=None)]
        else:
            header = names[:shown]
            body = [[_cell(value) for value in row[:shown]] for row in head.rows()]
        lines.append(f"first {len(body)} rows" + (f" (first {shown} columns)" if shown < columns else "") + ":")
        lines += _table(header, body)
    return "\n".join(lines)


def _series_label(series: Any) -> str:
    return f"Series {len(series)} {series.dtype}"


def _series_text(series: Any) -> str:
    library = type(series).__module__.split(".")[0]
    name = getattr(series, "name", None)
    lines = [f"{library} Series {name!r}: {len(series)} values, dtype {series.dtype}"]
    head = series.head(HEAD_ROWS)
    if library == "pandas":
        body = [[_cell(index), _cell(value)] for index, value in head.items()]
    else:
        body = [[str(i), _cell(value)] for i, value in enumerate(head.to_list())]
    if body:
        lines.append(f"first {len(body)} values:")
        lines += _table(["", str(name)], body)
    return "\n".join(lines)


def _array_text(array: Any) -> str:
    import numpy  # loaded already: `array` is one of its arrays

    lines = [f"numpy ndarray: shape {tuple(array.shape)}, dtype {array.dtype}, {array.size} elements"]
    if array.size and array.dtype.kind in "iuf":
        try:
            finite = array[numpy.isfinite(array)] if array.dtype.kind == "f" else array
            summary = f"min {finite.min():.6g}, max {finite.max():.6g}, mean {finite.mean():.6g}" if finite.size else ""
            missing = array.size - finite.size
            lines.append(summary + (f", {missing} NaN/inf" if missing else ""))
        except (TypeError, ValueError):
            pass
    sample = numpy.array2string(array, threshold=60, edgeitems=3, max_line_width=100, precision=4)
    lines += ["sample:", sample]
    return "\n".join(lines)


def _error_text(exc: BaseException, tb: TracebackType | None) -> str:
    """The usual traceback text, without IPython's own frames and with the innermost frames only."""
    while tb is not None and _is_ipython_frame(tb):
        tb = tb.tb_next
    formatted = traceback.TracebackException(type(exc), exc, tb, limit=-TRACEBACK_FRAMES, compact=True)
    return "".join(formatted.format()).rstrip("\n")


def _type_name(obj: Any) -> str:
    kind = type(obj)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _object_text(obj: Any) -> str:
    if isinstance(obj, str):
        return obj  # text given as context is meant to be read as it is
    return f"{_type_name(obj)}{_size(obj)}:\n{_repr(obj)}"


# -- helpers


def _attachment(kind: str, label: str, text: str, budget_chars: int) -> Attachment:
    """The protocol's shape and limits; a traceback keeps its end (innermost frames, message)."""
    text = fit(_sendable(text), min(budget_chars, MAX_TEXT_CHARS), tail=kind == "error")
    return {"kind": kind, "label": _sendable(label)[:MAX_LABEL_CHARS], "text": text}


def _common_cap(lengths: list[int], budget: int) -> int:
    """The largest c with sum(min(length, c)) <= budget: only the largest parts are cut, to c."""
    remaining, count = budget, len(lengths)
    for length in sorted(lengths):
        share = remaining // count
        if length > share:
            return share
        remaining -= length
        count -= 1
    return max(lengths)


def _marker(left_out: int, newline_before: bool, newline_after: bool) -> str:
    text = f"… [truncated: {left_out:,} more characters]"
    return ("\n" if newline_before else "") + text + ("\n" if newline_after else "")


def _at_line_break(head: str) -> str:
    cut = head.rfind("\n")
    return head[: cut + 1] if cut >= len(head) * 4 // 5 else head


def _from_line_break(end: str) -> str:
    cut = end.find("\n")
    return end[cut + 1 :] if 0 <= cut < len(end) // 5 else end


def _is_instance(obj: Any, module: str, name: str) -> bool:
    """isinstance against `module.name` only when that module is already imported."""
    kind = getattr(sys.modules.get(module), name, None)
    return isinstance(kind, type) and isinstance(obj, kind)


def _is_frame(obj: Any) -> bool:
    return _is_instance(obj, "pandas", "DataFrame") or _is_instance(obj, "polars", "DataFrame")


def _is_ipython_frame(tb: TracebackType) -> bool:
    filename = tb.tb_frame.f_code.co_filename.replace("\\", "/")
    return "/IPython/core/" in filename


def _cell(value: Any) -> str:
    is_float = isinstance(value, float) or getattr(getattr(value, "dtype", None), "kind", "") == "f"
    text = f"{value:.6g}" if is_float else " ".join(str(value).split())
    return text if len(text) <= CELL_CHARS else text[: CELL_CHARS - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    header = [_cell(name) for name in header]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [header, *rows]]


_reprs = reprlib.Repr()
_reprs.maxlevel, _reprs.maxlist, _reprs.maxtuple, _reprs.maxdict, _reprs.maxset = 4, 30, 30, 30, 30
_reprs.maxstring, _reprs.maxlong, _reprs.maxother = 400, 200, MAX_TEXT_CHARS


def _repr(obj: Any) -> str:
    """repr, shortened inside containers by reprlib so a huge list is never built as text."""
    try:
        return _reprs.repr(obj)
    except Exception as error:  # a broken __repr__ must not stop the question
        return f"<repr failed: {_failure(error)}>"


def _failure(error: Exception) -> str:
    """`Type: message` of an exception whose own `__str__` may fail too."""
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:
        return type(error).__name__


def _sendable(text: str) -> str:
    """`text` as valid UTF-8: a lone surrogate (e.g. from a file name decoded with
    surrogateescape) would make encoding the question fail; it is shown as `\\udcxx`."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
