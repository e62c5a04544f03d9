"""A view's aggregations compiled into one fold function, from the folds of ``features/aggregations.py``.

The operator folds every event into each aggregation of each view it belongs to.
Looping over the aggregations and calling each fold costs more than the folds do, so
:func:`compile_add` writes one straight-line function per view: each aggregation's
``add`` is called directly, or inlined from its ``add_expr`` (the same fold as an
expression, checked equal to ``add`` by tests/unit/test_aggregations.py). The
generated text is kept on the function (``__source__``) for debugging.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from freshet.features.aggregations import AggregationFunction


def fold_lines(columns: list[str | None], fns: list[AggregationFunction], *, offset: int, states: str,
               source: str, slots: dict[str, int] | None = None, skip: set[int] | None = None,
               indent: str = "    ", prefix: str = "") -> tuple[list[str], dict[str, Any]]:
    """The statements folding one event into ``{states}[offset + i]`` for each aggregation i, and the
    names they use (each aggregation's ``add`` as ``{prefix}f{i}``; an event field's value as
    ``{prefix}v{k}``): :func:`compile_add`'s body, for a compiled step that folds inline.

    ``source`` names the event dict, or, when ``slots`` maps columns to positions, a row list.
    Aggregations in ``skip`` are left alone. Null values are skipped, as SQL does."""
    env: dict[str, Any] = {}
    lines: list[str] = []
    values: dict[str, str] = {}
    for i, (column, fn) in enumerate(zip(columns, fns, strict=True)):
        if skip and i in skip:
            continue
        slot = f"{states}[{offset + i}]"
        f = f"{prefix}f{i}"
        if column is None:
            expr = fn.add_expr or f"{f}({{s}}, None, ts)"
            lines.append(f"{indent}{slot} = " + expr.format(s=slot, v="None"))
            env[f] = fn.add
            continue
        if column not in values:
            name = f"{prefix}v{len(values)}"
            values[column] = name
            lines.append(f"{indent}{name} = {source}[{slots[column]}]" if slots is not None
                         else f"{indent}{name} = {source}.get({column!r})")
        v = values[column]
        expr = fn.add_expr or f"{f}({{s}}, {{v}}, ts)"
        env[f] = fn.add
        lines.append(f"{indent}if {v} is not None:")
        lines.append(f"{indent}    {slot} = " + expr.format(s=slot, v=v))
    return lines, env


def compile_add(columns: list[str | None], fns: list[AggregationFunction], *, offset: int,
                slots: dict[str, int] | None = None, skip: set[int] | None = None) -> Callable[..., Any]:
    """``add(states, source, ts)`` folding one event into ``states[offset + i]`` for each aggregation i
    (:func:`fold_lines`)."""
    body, env = fold_lines(columns, fns, offset=offset, states="states", source="source", slots=slots, skip=skip)
    lines = ["def add(states, source, ts):", *(body or ["    return None"])]
    text = "\n".join(lines) + "\n"
    exec(compile(text, "<freshet fold>", "exec"), env)  # noqa: S102 - text built above from fixed templates
    add = env["add"]
    add.__source__ = text
    return add  # type: ignore[no-any-return]


def compile_window(fns: list[AggregationFunction], *, offset: int) -> Callable[[list[Any], int, int], list[Any]]:
    """``window(tiles, lo, hi)``: the results of ``tiles[lo:hi]`` (``hi > lo``) merged in order.

    Each tile holds aggregation i at ``offset + i``; the first tile's states are merged with each
    later tile's, left to right, with each function's ``merge``, then each ``result`` is taken (the
    same calls, in the same order, as merging the tiles one by one; a function's ``merge_expr`` and
    ``result_expr`` inline)."""
    env: dict[str, Any] = {}
    n = len(fns)
    lines = ["def window(tiles, lo, hi):", "    t = tiles[lo]"]
    lines += [f"    a{i} = t[{offset + i}]" for i in range(n)]
    lines += ["    for j in range(lo + 1, hi):", "        t = tiles[j]"]
    lines += [f"        a{i} = " + (fn.merge_expr.format(a=f"a{i}", b=f"t[{offset + i}]") if fn.merge_expr
                                    else f"m{i}(a{i}, t[{offset + i}])") for i, fn in enumerate(fns)]
    lines.append("    return [" + ", ".join(fn.result_expr.format(s=f"a{i}") if fn.result_expr else f"r{i}(a{i})"
                                          for i, fn in enumerate(fns)) + "]")
    for i, fn in enumerate(fns):
        env[f"m{i}"], env[f"r{i}"] = fn.merge, fn.result
    text = "\n".join(lines) + "\n"
    exec(compile(text, "<freshet window>", "exec"), env)  # noqa: S102 - text built above from fixed templates
    window = env["window"]
    window.__source__ = text
    return window  # type: ignore[no-any-return]


def compile_tally(slots: list[int]) -> Callable[[list[dict[str, int]], Any, int, int, int], None]:
    """``tally(multisets, rows, lo, hi, delta)``: add ``delta`` to ``multisets[k]``'s count of the value at
    ``slots[k]`` of each of ``rows[lo:hi]`` (non-null values, keyed by their text; a count reaching 0 is
    removed): the multisets of count_distinct aggregations over a sliding window. One straight-line
    function per view, as for :func:`compile_add`: the loop over the aggregations costs more than the
    counting does."""
    lines = ["def tally(multisets, rows, lo, hi, delta):"]
    lines += [f"    m{k} = multisets[{k}]" for k in range(len(slots))]
    lines += ["    for j in range(lo, hi):", "        row = rows[j]"]
    for k, slot in enumerate(slots):
        lines += [f"        value = row[{int(slot)}]",
                  "        if value is not None:",
                  "            key = value if value.__class__ is str else str(value)",
                  f"            n = m{k}.get(key, 0) + delta",
                  "            if n:",
                  f"                m{k}[key] = n",
                  "            else:",
                  f"                del m{k}[key]"]
    if not slots:
        lines.append("        pass")
    text = "\n".join(lines) + "\n"
    env: dict[str, Any] = {}
    exec(compile(text, "<freshet tally>", "exec"), env)  # noqa: S102 - text built above from fixed templates
    tally = env["tally"]
    tally.__source__ = text
    return tally  # type: ignore[no-any-return]
