"""How the CLI prints: indented JSON for scripts, aligned tables for people."""

from __future__ import annotations

import json
from typing import Any, TextIO


def print_json(value: Any, out: TextIO) -> int:
    json.dump(value, out, indent=2, ensure_ascii=False, default=str)
    out.write("\n")
    return 0


def print_table(headers: list[str], rows: list[list[Any]], out: TextIO) -> None:
    cells = [headers] + [[str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), file=out)
    if not rows:
        print("(none)", file=out)
