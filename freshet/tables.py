"""Plain-text tables for people (commands print them; `--json` is for scripts)."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(rows: Sequence[Sequence[str]], *, right_from: int | None = None) -> list[str]:
    """Rows (the first is the header) as aligned lines; columns from ``right_from`` on are right-aligned
    (numbers), the others left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(w) if right_from is not None and i >= right_from else cell.ljust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in rows]
