"""Reads as of an instant (issue 11, the pure core): the rule, and a compact state that answers it.

A view is read as of an instant ``t`` (epoch ms; the request time online, the label time offline)
over the entity's *accepted* events: the events the window operator counted somewhere (valid and not
late for every window they fall in). The rule, for a view of size ``S`` (and step ``P``):

- **sliding**: the aggregates of the accepted events with time in ``[max(0, t - S), t]``, both ends
  included (the streaming sliding window's ends); ``feature_ts`` is ``t``. A card that made 5
  transactions 8 minutes ago reads 5 on a 10-minute count now, and 0 three minutes later.
- **tumbling / hopping** (tumbling: ``P = S``): the most recent window ``[s, s + S)`` that has ended by
  ``t`` (``s + S <= t``, ``s`` a non-negative multiple of ``P``), whether or not the entity has sent
  anything since, aggregated over the events counted in *that* window; ``feature_ts`` is its end.
  A hopping event may be late for the earliest windows holding it and counted in later ones, so an
  accepted event carries ``first_start``, the earliest window start it counts in; window ``s`` holds
  it only if ``first_start <= s`` (for tumbling, ``first_start`` is its one window's start).

Decided here:

- **No window** (fixed windows, ``t < S``: none has ended): the read is ``None``, no value.
- **An empty window** (a window that exists, holding no accepted event, e.g. a card gone quiet): the
  folds of the empty set, ``result(initial())``: count and count_distinct 0, sum 0, and mean, min,
  max, last, stddev and stddev_pop null; ``feature_ts`` as above. "0 transactions in the last 10
  minutes" is an answer, not a missing value; an entity with no accepted event at all reads the same
  (``read_as_of(view, [], t)``), so a store without state for an entity should answer it too.
- **Reads settle with grace**: an event with time ``<= t`` accepted after a read (out of order, within
  grace) changes later answers for ``t``; the answer for ``t`` is final once the entity's watermark has
  passed ``t + grace`` (+ ``S`` for sliding), as for the streaming windows.

The state (:class:`SlidingAsOf`, :class:`TiledAsOf`; one per entity and view) answers the rule from
what it keeps. ``add`` takes accepted events in arrival order (O(1) amortised for in-order events);
``read_at(t)`` answers; ``prune(horizon)`` drops what only reads with ``t < watermark - horizon`` need.
The state's *floor* is the earliest instant it answers: a read before it raises
:class:`AsOfHorizonError`, never a wrong value; reads at or after it are exact. An event that no read
at or after the floor can see is not kept.

- Sliding views keep the accepted events of the window reaching back from the floor (time, and the
  columns the aggregations read), sorted by (time, arrival), with the aggregate of each whole block of
  :data:`BLOCK_ROWS` (64) rows: a read bisects its window, folds the rows of the partial blocks at its
  two ends and merges the blocks between them (a bare count is a difference of two indices). An
  out-of-order event drops the block aggregates after it; they are folded again when next needed.
  **Hot entities:** at most ``max_events`` rows (default :data:`MAX_SLIDING_EVENTS` = 10,000) are
  kept. Beyond it the oldest eighth is dropped and the floor moves past them (their time + ``S`` + 1):
  reads that would need a dropped event are refused with the reason, never answered from part of the
  window. At the cap a read folds at most 128 rows and merges at most 157 blocks.
- Tumbling and hopping views keep tiles of ``gcd(S, P)`` of event time, one partial fold per
  (tile start, ``first_start``), so a window is the exact merge of the tiles it covers whose class
  it counts: hopping partial lateness stays exact. A read merges at most ``S / gcd(S, P)`` tiles
  times the classes present.

Both states serialise to plain JSON values (:meth:`to_json`, :func:`load_as_of_state`). Nothing here
imports Kafka, Quix, Redis or Arrow; the folds are those of :mod:`freshet.features.aggregations`.
"""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from operator import itemgetter
from typing import Any, NamedTuple

from freshet.features.definitions import FeatureView, SlidingWindow
from freshet.features.errors import FreshetError
from freshet.features.window_folds import WindowFolds

MAX_SLIDING_EVENTS = 10_000
BLOCK_ROWS = 64  # a sliding state's rows per block aggregate
_time = itemgetter(0)  # a row's or a tile's time: the key rows and tiles are sorted by


class AcceptedEvent(NamedTuple):
    """One event the window operator counted, in arrival order; ``first_start``: see the module doc."""

    ts: int
    event: Mapping[str, Any]
    first_start: int = 0


class AsOfValue(NamedTuple):
    """A view's features as of an instant, with the window they are over."""

    feature_ts: int
    window_start: int
    window_end: int  # sliding: included (= t); tumbling and hopping: excluded
    values: dict[str, Any]


class AsOfHorizonError(FreshetError, LookupError):
    """A read before the earliest instant a state still answers exactly (pruned or capped)."""


def window_at(view: FeatureView, t: int) -> tuple[int, int] | None:
    """The window read as of ``t``: ``(start, end)`` (see :class:`AsOfValue`), or None if none ended."""
    if t < 0:
        raise ValueError(f"an as-of instant is epoch milliseconds >= 0, got {t}")
    size = view.window.size
    if isinstance(view.window, SlidingWindow):
        return max(0, t - size), t
    if t < size:
        return None
    start = (t - size) // view.window.step * view.window.step
    return start, start + size


def _counts_in(view: FeatureView, start: int, ev: AcceptedEvent) -> bool:
    """Whether window ``start`` (the one read) holds accepted event ``ev``."""
    if isinstance(view.window, SlidingWindow):
        return ev.ts >= start
    return ev.first_start <= start and ev.ts < start + view.window.size


def read_as_of(view: FeatureView, accepted: Iterable[AcceptedEvent], t: int) -> AsOfValue | None:
    """The rule itself, by brute force: ``view`` as of ``t`` over an entity's accepted events (in
    arrival order). The reference the states are tested against; the offline path may use it."""
    window = window_at(view, t)
    if window is None:
        return None
    start, end = window
    folds = WindowFolds(view)
    members = [ev for ev in accepted if start <= ev.ts <= end and _counts_in(view, start, ev)]
    members.sort(key=_time)  # stable: ties stay in arrival order
    fixed = not isinstance(view.window, SlidingWindow)
    return AsOfValue(end if fixed else t, start, end, folds.fold(folds.row(ev.ts, ev.event) for ev in members))


class _AsOfState:
    """What both states share: the watermark (largest accepted time), the floor and JSON."""

    kind = ""

    def __init__(self, view: FeatureView) -> None:
        self.view = view
        self.size = view.window.size
        self.folds = WindowFolds(view)
        self.watermark = -1  # no event yet
        self.floor = 0  # reads with t < floor are refused
        self.floor_reason = ""  # "horizon" or "cap": why the floor is where it is

    def _check(self, t: int) -> None:
        if t < 0:
            raise ValueError(f"an as-of instant is epoch milliseconds >= 0, got {t}")
        if t < self.floor:
            raise AsOfHorizonError(f"view {self.view.name!r}: cannot read as of {t}: this state answers "
                                   f"exactly from {self.floor} on ({self._why()})")

    def _why(self) -> str:
        return f"pruned to a horizon behind its watermark {self.watermark}"

    def _raise_floor(self, floor: int, reason: str) -> None:
        if floor > self.floor:
            self.floor, self.floor_reason = floor, reason

    def prune(self, horizon: int) -> None:
        """Keep what reads with ``t >= watermark - horizon`` need; refuse reads before that from now on."""
        if horizon < 0:
            raise ValueError(f"a prune horizon is >= 0 ms, got {horizon}")
        if self.watermark >= 0:
            self._raise_floor(self.watermark - horizon, "horizon")
            self._drop_before_floor()

    def _drop_before_floor(self) -> None:
        raise NotImplementedError

    def _items(self) -> list[Any]:
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        """The state as plain JSON values (numbers, strings, lists, dicts)."""
        return {"kind": self.kind, "watermark": self.watermark, "floor": self.floor,
                "floor_reason": self.floor_reason, "items": self._items()}

    def _load(self, data: Mapping[str, Any]) -> None:
        self.watermark, self.floor = int(data["watermark"]), int(data["floor"])
        self.floor_reason = str(data["floor_reason"])


class SlidingAsOf(_AsOfState):
    """A sliding view's as-of state: the accepted events a read at or after the floor can need."""

    kind = "sliding"

    def __init__(self, view: FeatureView, max_events: int = MAX_SLIDING_EVENTS,
                 block_rows: int = BLOCK_ROWS) -> None:
        super().__init__(view)
        if max_events < 1 or block_rows < 1:
            raise ValueError(f"max_events and block_rows must be at least 1, got {max_events}, {block_rows}")
        self.max_events = max_events
        self.block_rows = block_rows
        self.rows: list[list[Any]] = []  # [ts, *column values], by (ts, arrival)
        self.base = 0  # the number of rows[0] counting every row ever kept: rows dropped so far
        # block b: the folded states of the rows numbered [b * block_rows, (b + 1) * block_rows)
        self.blocks: dict[int, list[Any]] = {}

    def add(self, ev: AcceptedEvent) -> None:
        ts = ev.ts
        if ts < self.floor - self.size:
            return  # no read at or after the floor reaches it
        rows = self.rows
        if not rows or rows[-1][0] <= ts:
            rows.append(self.folds.row(ev.ts, ev.event))
        else:
            at = bisect_right(rows, ts, key=_time)
            rows.insert(at, self.folds.row(ev.ts, ev.event))
            self._keep_blocks(self.base, self.base + at)  # every later row moved up by one
        if ts > self.watermark:
            self.watermark = ts
        if len(rows) > self.max_events:
            # drop the oldest eighth at once (O(1) amortised); a read that needs them is refused
            drop = len(rows) - self.max_events + self.max_events // 8
            self._raise_floor(rows[drop - 1][0] + self.size + 1, "cap")
            self._drop_before_floor()

    def read_at(self, t: int) -> AsOfValue:
        self._check(t)
        start = max(0, t - self.size)
        lo = bisect_left(self.rows, start, key=_time)
        hi = bisect_right(self.rows, t, key=_time)
        if self.folds.only_counts:
            values: dict[str, Any] = dict.fromkeys(self.folds.names, hi - lo)
        else:
            values = self.folds.results(self._fold(lo, hi))
        return AsOfValue(t, start, t, values)

    def _fold(self, lo: int, hi: int) -> list[Any]:
        """The states of rows[lo:hi]: the rows of the partial blocks at both ends, and between them
        the blocks' aggregates (folded when first needed), merged in row order."""
        folds, rows, base, size = self.folds, self.rows, self.base, self.block_rows
        first, last = -(-(base + lo) // size), (base + hi) // size  # the whole blocks: [first, last)
        states = folds.initial()
        if first >= last:
            for row in rows[lo:hi]:
                folds.add(states, row)
            return states
        for row in rows[lo:first * size - base]:
            folds.add(states, row)
        for b in range(first, last):
            block = self.blocks.get(b)
            if block is None:
                block = self.blocks[b] = folds.initial()
                for row in rows[b * size - base:(b + 1) * size - base]:
                    folds.add(block, row)
            states = folds.merge(states, block)
        for row in rows[last * size - base:hi]:
            folds.add(states, row)
        return states

    def _keep_blocks(self, first_row: int, end_row: int) -> None:
        """Keep only the block aggregates of rows numbered within [first_row, end_row)."""
        size = self.block_rows
        for b in [b for b in self.blocks if b * size < first_row or (b + 1) * size > end_row]:
            del self.blocks[b]

    def _drop_before_floor(self) -> None:
        cut = bisect_left(self.rows, self.floor - self.size, key=_time)
        if cut:
            del self.rows[:cut]
            self.base += cut
            self._keep_blocks(self.base, self.base + len(self.rows))

    def _why(self) -> str:
        if self.floor_reason != "cap":
            return super()._why()
        return (f"the entity passed the cap of {self.max_events:,} events kept, so its events up to "
                f"{self.floor - self.size - 1} were dropped")

    def _items(self) -> list[Any]:
        return self.rows

    def to_json(self) -> dict[str, Any]:
        """As :meth:`_AsOfState.to_json`, with every whole block's aggregate (``[[b, states], ...]``),
        so a reader folds at most two partial blocks of rows."""
        size = self.block_rows
        self._fold(0, len(self.rows))  # fills the missing blocks
        return {**super().to_json(), "base": self.base, "block_rows": size,
                "blocks": [[b, self.blocks[b]] for b in sorted(self.blocks)]}

    def _load(self, data: Mapping[str, Any]) -> None:
        super()._load(data)
        self.rows = [list(row) for row in data["items"]]
        self.base = int(data["base"])
        if int(data["block_rows"]) == self.block_rows:
            self.blocks = {int(b): list(states) for b, states in data["blocks"]}


class TiledAsOf(_AsOfState):
    """A tumbling or hopping view's as-of state: tiles ``[start, first_start, states]``."""

    kind = "tiled"

    def __init__(self, view: FeatureView) -> None:
        super().__init__(view)
        if isinstance(view.window, SlidingWindow):
            raise ValueError(f"view {view.name!r} has a sliding window: its as-of state is SlidingAsOf")
        self.step = view.window.step
        self.tile = math.gcd(self.size, self.step)
        self.tiles: list[list[Any]] = []  # by (start, first_start)

    def _oldest_start(self) -> int:
        """The start of the oldest window a read at or after the floor can ask for."""
        window = window_at(self.view, self.floor)
        return 0 if window is None else window[0]

    def add(self, ev: AcceptedEvent) -> None:
        ts, first = ev.ts, ev.first_start
        if first < 0 or first % self.step or not first <= ts < first + self.size:
            raise ValueError(f"view {self.view.name!r}: first_start {first} is not the start of a "
                             f"window holding time {ts} (size {self.size}, step {self.step})")
        start = ts - ts % self.tile
        if start < self._oldest_start():
            return  # no window a read at or after the floor asks for holds it
        tiles = self.tiles
        i = len(tiles) - 1
        while i >= 0 and (tiles[i][0], tiles[i][1]) > (start, first):
            i -= 1
        if i >= 0 and tiles[i][0] == start and tiles[i][1] == first:
            states = tiles[i][2]
        else:
            states = self.folds.initial()
            tiles.insert(i + 1, [start, first, states])
        self.folds.add(states, self.folds.row(ev.ts, ev.event))
        if ts > self.watermark:
            self.watermark = ts

    def read_at(self, t: int) -> AsOfValue | None:
        self._check(t)
        window = window_at(self.view, t)
        if window is None:
            return None
        start, end = window
        acc: list[Any] | None = None
        i = bisect_left(self.tiles, start, key=_time)
        while i < len(self.tiles) and self.tiles[i][0] < end:
            tile_start, first, states = self.tiles[i]
            if first <= start:  # merged in (start, first_start) order: `last` ties go to later arrivals
                acc = states if acc is None else self.folds.merge(acc, states)
            i += 1
        return AsOfValue(end, start, end, self.folds.results(self.folds.initial() if acc is None else acc))

    def _drop_before_floor(self) -> None:
        del self.tiles[:bisect_left(self.tiles, self._oldest_start(), key=_time)]

    def _items(self) -> list[Any]:
        return self.tiles

    def _load(self, data: Mapping[str, Any]) -> None:
        super()._load(data)
        self.tiles = [[int(a), int(f), list(s)] for a, f, s in data["items"]]


AsOfState = SlidingAsOf | TiledAsOf


def as_of_state(view: FeatureView, max_events: int = MAX_SLIDING_EVENTS,
                block_rows: int = BLOCK_ROWS) -> AsOfState:
    """An empty as-of state for one entity of ``view`` (``max_events``, ``block_rows``: sliding only)."""
    if isinstance(view.window, SlidingWindow):
        return SlidingAsOf(view, max_events, block_rows)
    return TiledAsOf(view)


def load_as_of_state(view: FeatureView, data: Mapping[str, Any], max_events: int = MAX_SLIDING_EVENTS,
                     block_rows: int = BLOCK_ROWS) -> AsOfState:
    """The state :meth:`to_json` wrote, for ``view``; refuses a state of the other window kind."""
    state = as_of_state(view, max_events, block_rows)
    if data.get("kind") != state.kind:
        raise ValueError(f"view {view.name!r} keeps {state.kind!r} as-of state, got {data.get('kind')!r}")
    state._load(data)
    return state
