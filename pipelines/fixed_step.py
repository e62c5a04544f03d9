"""A tumbling or hopping view's per-event step, compiled for that view.

:class:`freshet.pipelines.tiles.FixedWindows` runs once per event and view, so what
the step costs beyond its arithmetic counts: attribute look-ups of the view's sizes,
the branches on its emit mode and on whether it logs accepted events, and a call to
its fold. :func:`fixed_step_code` writes the step for one view (run alone, or inline in
its operator's step: :mod:`freshet.pipelines.step_code`):
the sizes as constants, only the branches that apply, the fold inline
(:func:`freshet.pipelines.folds.fold_lines`). The rules are
:class:`~freshet.pipelines.tiles.FixedWindows`'s; events before the watermark, and
closes, go to its methods. The generated text is kept on the function (``__source__``).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from freshet.pipelines.folds import fold_lines
from freshet.pipelines.step_code import StepCode

if TYPE_CHECKING:
    from freshet.pipelines.tiles import FixedWindows


def fixed_step_code(window: FixedWindows) -> StepCode:
    """The step of one tumbling or hopping view (see :mod:`freshet.pipelines.step_code`)."""
    from freshet.pipelines.tiles import EmittedValue

    size, step, tile, grace = int(window.size), int(window.step), int(window.tile), int(window.grace)
    w = f"w{int(window.index)}_"
    fold, env = fold_lines(window.plan.columns, window.plan.fns, offset=2, states="tile", source="event",
                           indent="        ", prefix=w)
    template = window.plan.template
    new_tile = (f"[start, closed_start, {', '.join(repr(v) for v in template)}]" if template
                else f"[start, closed_start, *{w}initial()]")
    lines = ["    tiles = vs[2]",
             "    if ts >= vs[0]:",
             # in order (the common case): every window containing ts starts after ts - size, so after the
             # close line (grace >= 0): it is late for none and counted from the first; its tile is the newest
             f"        closed_start = ts - {grace + size}"]
    if size == step:  # tumbling: the first window is the event's tile
        lines.append(f"        first = start = ts - ts % {size}")
    else:
        lines += [f"        first = ((ts - {size}) // {step} + 1) * {step}",
                  "        if first < 0:",
                  "            first = 0",
                  f"        start = ts - ts % {tile}"]
    lines += ["        vs[0] = ts",
              "        if tiles and (tile := tiles[-1])[0] == start:",
              "            if closed_start < tile[1]:",
              "                tile[1] = closed_start",
              "        else:",
              f"            tile = {new_tile}",
              "            tiles.append(tile)",
              *fold]
    if not window.final:
        lines.append(f"        emitted.append({w}new_value(({window.index}, entity, ts, first, first + {size}, "
                     f"{w}window(tiles, first), partition, offset)))")
    if window.firsts is not None:
        lines.append(f"        {w}firsts_append(first)")
    lines += ["    else:",
              f"        closed_start = {w}out_of_order(vs, entity, event, ts, partition, offset, emitted, late)",
              "    if tiles:",
              # the first window that may still be emitted: past `settled`, holding the first tile
              "        next_start = tiles[0][0]" if size == step else
              f"        next_start = ((tiles[0][0] - {size}) // {step} + 1) * {step}",
              f"        settled_next = (vs[1] // {step} + 1) * {step}",
              "        if settled_next > next_start:",
              "            next_start = settled_next",
              "        if next_start <= closed_start:",
              f"            {w}close(vs, entity, closed_start, partition, offset, emitted)"]
    env.update({f"{w}new_value": partial(tuple.__new__, EmittedValue), f"{w}window": window._window,
                f"{w}initial": window.plan.initial, f"{w}out_of_order": window._out_of_order,
                f"{w}close": window._close,
                f"{w}firsts_append": window.firsts.append if window.firsts is not None else None})
    return StepCode(lines, env)
