"""Reports: tables for the terminal and Markdown, records as JSON."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

__all__ = ["format_table", "markdown_table", "report_records", "write_json"]


def _cells(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> list[list[str]]:
    return [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: right-aligned columns, a rule under the header."""
    cells = _cells(headers, rows)
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table."""
    cells = _cells(headers, rows)
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    lines.insert(1, "|" + "|".join(" --- " for _ in headers) + "|")
    return "\n".join(lines)


def write_json(path: str | None, value: object, indent: int = 2) -> None:
    """``value`` as indented JSON at ``path``; nothing when ``path`` is None (a benchmark's
    optional ``--json``)."""
    if path is None:
        return
    with open(path, "w") as handle:
        json.dump(value, handle, indent=indent)


def report_records(
    records: list[dict],
    headers: Sequence[str],
    row: Callable[[dict], Sequence[object]],
    path: str | None,
) -> list[dict]:
    """Print ``records`` as a table (one ``row(record)`` each), write them as JSON at ``path``
    (if given) and return them: the end of a benchmark script's ``main``."""
    print(format_table(headers, [row(record) for record in records]))
    write_json(path, records)
    return records
