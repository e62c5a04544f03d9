"""A sliding view's per-event step, compiled for that view.

As for tumbling and hopping views (:mod:`freshet.pipelines.fixed_step`): the step runs
once per event and view, so :func:`sliding_step_code` writes it as one function for
one view (run alone, or inline in its operator's step: :mod:`freshet.pipelines.step_code`), with its size and grace as constants, only the branches that apply and the
event's row built inline. For a view of counts and count_distincts alone emitting
``current`` (the window is then a row count and multisets, no fold), the in-order
event's window value is computed inline too: the queue's window was the previous
in-order event's, so the new row enters at the back and the rows now too old leave at
the front (:meth:`SlidingWindows._value <freshet.pipelines.sliding.SlidingWindows>`'s
in-order case, with the same updates in the same order). Anything else goes to
:class:`~freshet.pipelines.sliding.SlidingWindows`'s methods, whose rules these are.
The generated text is kept on the function (``__source__``).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from freshet.pipelines.step_code import StepCode, indent

if TYPE_CHECKING:
    from freshet.pipelines.sliding import SlidingWindows


def sliding_step_code(window: SlidingWindows) -> StepCode:
    """The step of one sliding view (see :mod:`freshet.pipelines.step_code`)."""
    from freshet.pipelines.tiles import EmittedValue

    size, grace = int(window.size), int(window.grace)
    w = f"w{int(window.index)}_"
    columns = window.columns
    row = "[ts, " + "".join(f"r{j + 1}, " for j in range(len(columns))) + "None]"
    lines = ["vs[0] = ts"]  # in order (the common case): it is late for no window, and its row goes last
    if window.firsts is not None:
        lines.append(f"{w}firsts_append(ts)")
    lines += ["events = vs[2]",
              "n = len(events)",
              f"own_start = ts - {size} if ts > {size} else 0",
              f"close_end = ts - {grace + 1}",
              *[f"r{j + 1} = event.get({c!r})" for j, c in enumerate(columns)]]
    if window.final:
        lines += ["own_exists = n > 0 and events[n - 1][0] == ts",
                  f"events.append({row})",
                  f"{w}close(vs, entity, close_end - {size}, partition, offset, emitted,",
                  f"      None if own_exists or own_start > vs[1] - {size} else ts)"]
    else:
        lines.append(f"events.append({row})")
        if window.stacked:
            lines.append(f"value = {w}window_value(vs, own_start, ts, n + 1)")
        else:
            lines += _counted_value(window, w)
        lines.append(f"emitted.append({w}new_value(({window.index}, entity, ts, own_start, ts, value, partition, "
                     "offset)))")
    lines += ["if close_end > vs[1]:",
              "    vs[1] = close_end",
              # rows no window still to be asked for can reach leave (SlidingWindows._evict); inline when the
              # queue's rows all stay (the common case): its indices move down
              f"horizon = close_end - {2 * size}",
              "if events[0][0] <= horizon:",
              "    cut = 1",
              "    while events[cut][0] <= horizon:",  # stops at the new row at the latest: ts > horizon
              "        cut += 1",
              "    queue = vs[3]",
              "    if queue is None or queue[0] >= cut:",
              "        if queue is not None:",
              "            queue[0] -= cut",
              "            queue[1] -= cut",
              "            queue[2] -= cut",
              "        del events[:cut]",
              "    else:",
              f"        {w}evict(vs, horizon)"]
    env: dict[str, Any] = {
        f"{w}new_value": partial(tuple.__new__, EmittedValue), f"{w}window_value": window._value,
        f"{w}out_of_order": window._out_of_order, f"{w}close": window._close, f"{w}evict": window._evict,
        f"{w}tally": window._tally, f"{w}firsts_append": window.firsts.append if window.firsts is not None else None}
    return StepCode(["    if ts < vs[0]:",
                     f"        {w}out_of_order(vs, entity, event, ts, partition, offset, emitted, late)",
                     "    else:", *indent(lines, "        ")], env)


def _counted_value(window: SlidingWindows, w: str) -> list[str]:
    """Statements setting ``value``, the own window's results, for a view of counts and count_distincts:
    inline when the queue holds the previous in-order window, else through ``window_value``."""
    multi = window.multi  # (multiset index, aggregation index, row slot)
    results = ["None"] * len(window.plan.fns)
    for k, i, _slot in multi:
        results[i] = f"len(m{k})"
    for i in window.row_counts:
        results[i] = "n + 1 - lo"
    lines = ["queue = vs[3]",
             # the queue's window ends at the previous row and starts at or before this one's: one row enters
             "if queue is not None and queue[2] == n and ((lo := queue[0]) == 0 or events[lo - 1][0] < own_start):"]
    if multi:
        lines.append("    multisets = queue[4]")
        lines += [f"    m{k} = multisets[{k}]" for k, _i, _slot in multi]
        for k, _i, slot in multi:  # the new row enters (as tally(..., delta=1) does)
            lines += [f"    if r{slot} is not None:",
                      f"        key = r{slot} if r{slot}.__class__ is str else str(r{slot})",
                      f"        m{k}[key] = m{k}.get(key, 0) + 1"]
    lines += ["    start = lo",
              "    while events[lo][0] < own_start:",  # ends at the new row, whose time is ts >= own_start
              "        lo += 1"]
    if multi:  # the rows before own_start leave
        lines += ["    if lo > start:",
                  f"        {w}tally(multisets, events, start, lo, -1)"]
    lines += ["    queue[2] = n + 1",
              "    queue[0] = queue[1] = lo",
              f"    value = [{', '.join(results)}]",
              "else:",
              f"    value = {w}window_value(vs, own_start, ts, n + 1)"]
    return lines
