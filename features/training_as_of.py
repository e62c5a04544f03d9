"""Training sets for request-time views (``as_of: request``): each label read as of its own time.

For a label row ``(entity, t)`` the features are exactly :func:`freshet.features.as_of.read_as_of` of
the view at ``t`` over the entity's accepted events, read from the view's accepted-events log
(:mod:`freshet.features.as_of_layout`), not from its values log:

- **sliding** ``S``: the events with ``max(0, t - S) <= event_ts <= t``; ``feature_ts`` is ``t``;
- **tumbling / hopping** ``S``, step ``P``: for ``t < S`` no window has ended, features and
  ``feature_ts`` are null; else the window ``s = (t - S) // P * P``, the events with
  ``s <= event_ts < s + S`` and ``first_window_start <= s``; ``feature_ts`` is ``s + S``.

A window that exists but holds no event gives the folds of nothing: count and count_distinct 0, sum 0,
the others null (an entity without any accepted event reads the same). Null values are skipped, as the
folds of :mod:`freshet.features.aggregations` do (``count`` over a column counts its non-null values,
``stddev`` is the sample one, ``last`` is the value of the latest event, ties in time going to the
larger (source partition, source offset): arrival order for a source keyed by entity).

- ``exclusive=True`` reads as of ``t - 1`` ms: only events strictly before ``t`` (a sliding window
  ``[t - 1 - S, t - 1]``, ``feature_ts = t - 1``; a fixed window must have ended by ``t - 1``). A label
  at ``t = 0`` then has nothing to read: null features and ``feature_ts``; so has any label whose
  instant is before 1970 or whose entity is null.
- The view's TTL does not null these values: the window is always the one as of the label's time, so a
  card quiet for a week reads 0 transactions in the last 10 minutes, not null.

SQL (DuckDB; floats may differ from the folds in the last bits, DuckDB summing in another order):

- **Fixed windows** (tumbling, hopping): the distinct label windows ``(entity, s)``, each spread over
  the ``ceil(S / P)`` step buckets it covers, are equi-joined to the events on (entity,
  ``event_ts // P``), kept when ``event_ts < s + S`` and ``first_window_start <= s``, grouped by
  ``(entity, s)`` with plain aggregates and joined back to the labels. Work grows with the events in
  labelled windows, at most ``ceil(S / P)`` times each, however many labels share a window.
- **Sliding**, two plans with the same answer, chosen per call by counting the candidate pairs first
  (one pass over the events' entity and time):

  * *join* (sparse entities, the common case): each label spread over the two buckets of size ``S``
    its window touches, equi-joined to the events on (entity, ``event_ts // S``), filtered to the
    window, grouped per label. Its work is the candidate pairs: labels times the events of their two
    buckets, quadratic for an entity with many labels and many events per window;
  * *window*: one table of events and labels, entities as integer codes, aggregated over
    ``PARTITION BY entity ORDER BY time RANGE BETWEEN S PRECEDING AND CURRENT ROW`` (DuckDB's segment
    trees; ``count(DISTINCT)`` over its merge-sort tree): O(n log n) whatever the density, but slower
    on sparse data: 12.4 s against the join plan's 3.3 s for 1M labels over 10M events of 100,000
    cards with a count_distinct (``python -m bench.as_of_training``, bench/RESULTS.md).

  The join plan is taken while the candidate pairs are at most :data:`JOIN_PAIRS_PER_ROW` times the
  events and labels (measured: ~0.2 us a candidate pair, ~1.5 us a row of the window plan; with 1,000
  dense cards, 140M candidate pairs, the join took 28 s and the window plan 16 s).

``count_distinct`` follows the fold's identity of values (their text): ``0.0`` and ``-0.0`` are two
values there and one in SQL, so a float column's distinct count adds one where a window holds both.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from freshet.features.as_of_layout import (
    EVENT_TS,
    FIRST_WINDOW_START,
    accepted_dir,
    accepted_schema,
    list_accepted_parts,
)
from freshet.features.definitions import Aggregation, FeatureView, SlidingWindow
from freshet.features.errors import OfflineStoreError
from freshet.features.log_store import LogRoot
from freshet.features.offline_layout import ARROW_TYPES, TS_TYPE, parts_under

# sliding views: the join plan while its candidate (label, event) pairs are at most this many times the
# rows (events + labels), else the window plan (module doc)
JOIN_PAIRS_PER_ROW = 4.0

_ORDER = ("(ts::HUGEINT << 77) + (p::HUGEINT << 63) + o")  # (event_ts, partition, offset) as one number


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _Aggregates:
    """The SQL of a view's requested aggregations over events with columns ``c0, c1, ...``."""

    def __init__(self, view: FeatureView, features: list[str]) -> None:
        by_name = {a.name: a for a in view.aggregations}
        self.aggs: list[Aggregation] = [by_name[f] for f in features]
        self.columns = sorted({a.column for a in self.aggs if a.column is not None})
        self.alias = {c: f"c{i}" for i, c in enumerate(self.columns)}
        schema = view.source.event_schema
        self.column_types = {c: schema[c] for c in self.columns}
        self.types = view.feature_types()
        self.needs_order = any(a.function == "last" for a in self.aggs)

    def select(self, over: str = "") -> list[str]:
        """``f<i>``: the i-th requested feature; ``over`` (``" OVER w"``) makes them window functions."""
        return [f"{self._expr(a, over)} AS f{i}" for i, a in enumerate(self.aggs)]

    def _expr(self, agg: Aggregation, over: str) -> str:
        fn = agg.function
        if agg.column is None:  # count of events: k is 1 on event rows, null on label rows
            return f"coalesce(count(k){over}, 0)"
        c = self.alias[agg.column]
        kind = "BIGINT" if self.types[agg.name] == "int" else "DOUBLE"
        if fn == "count":
            return f"coalesce(count({c}){over}, 0)"
        if fn == "sum":
            return f"coalesce(sum({c}){over}, 0)::{kind}"
        if fn == "mean":
            return f"avg({c}){over}"
        if fn in ("min", "max"):
            return f"{fn}({c}){over}"
        if fn == "last":
            return f"arg_max({c}, ord) FILTER (WHERE {c} IS NOT NULL){over}"
        if fn == "stddev":
            return f"stddev_samp({c}){over}"
        if fn == "stddev_pop":
            return f"stddev_pop({c}){over}"
        if fn == "count_distinct":
            distinct = f"count(DISTINCT {c}){over}"
            if self.column_types[agg.column] == "float":  # 0.0 and -0.0: two values to the fold
                both = (f"(bool_or({c} = 0 AND signbit({c})){over} AND "
                        f"bool_or({c} = 0 AND NOT signbit({c})){over})")
                distinct = f"{distinct} + coalesce({both}::BIGINT, 0)"
            return f"coalesce({distinct}, 0)"
        raise OfflineStoreError(f"aggregation {agg.name!r}: function {fn!r} has no request-time training-set SQL")

    def output_schema(self, features: list[str]) -> list[pa.Field]:
        return [pa.field(f, ARROW_TYPES[self.types[f]]) for f in features]


def _event_columns(view: FeatureView, aggs: _Aggregates) -> str:
    """The accepted log's columns as the SQL below names them."""
    cols = [f"{_quote(view.entity_key)} AS e", f"epoch_ms({EVENT_TS}) AS ts",
            f"epoch_ms({FIRST_WINDOW_START}) AS fws", "source_partition AS p", "source_offset AS o",
            *(f"{_quote(c)} AS {aggs.alias[c]}" for c in aggs.columns)]
    return ", ".join(cols)


def accepted_files(root: LogRoot, view: FeatureView, from_ms: int | None, to_ms: int | None) -> list[str]:
    """The accepted log's parts whose dates can hold events in [from_ms, to_ms]; an error naming the view
    when the view has no accepted log at all (it was never run or replayed as a request-time view)."""
    directory = accepted_dir(root, view)
    files = parts_under(root, directory, from_ms=from_ms, to_ms=to_ms)
    if not files and not list_accepted_parts(root, view):
        raise OfflineStoreError(
            f"view {view.name!r} v{view.version} reads as of the request time (as_of: request), but there is no "
            f"accepted-events log at {root.display(directory)}: run or replay the pipeline with this view "
            "(as_of: request) to write it (check FRESHET_OFFLINE_ROOT / --offline-root)")
    return files


def _load_events(con: Any, root: LogRoot, view: FeatureView, files: list[str], aggs: _Aggregates) -> None:
    """A relation ``events(e, ts, fws, p, o, c0.., [ord])`` of the accepted events with ``ts >= 0``."""
    schema = accepted_schema(view)
    order = f", {_ORDER} AS ord" if aggs.needs_order else ""
    if files and root.is_local:
        # DuckDB's own Parquet reader (row groups decoded in parallel), as the values-log join does
        source = "read_parquet([" + ", ".join(_literal(p) for p in files) + "])"
    else:
        # object storage: pyarrow reads the files (DuckDB's httpfs is not used), or no file at all
        data = root.dataset(files, schema) if files else schema.empty_table()
        con.register("accepted_files", data)
        source = "accepted_files"
    con.execute(f"CREATE TEMP TABLE events AS SELECT *{order} FROM "
                f"(SELECT {_event_columns(view, aggs)} FROM {source}) WHERE ts >= 0").fetchall()


def request_time_features(label_entities: pa.Array, label_ts: pa.Array, view: FeatureView, root: LogRoot,
                          features: list[str], *, exclusive: bool,
                          progress: Callable[[str], None] | None = None) -> pa.Table:
    """Per label row (in order): ``features`` of ``view`` as of the label's time, and ``feature_ts``
    (see the module doc). ``label_ts``: epoch ms."""
    import duckdb

    aggs = _Aggregates(view, features)
    window = view.window
    size = window.size
    sliding = isinstance(window, SlidingWindow)
    step = size if isinstance(window, SlidingWindow) else window.step
    reads = pc.subtract(pc.cast(label_ts, pa.int64()), 1) if exclusive else pc.cast(label_ts, pa.int64())
    lo = pc.min(reads).as_py() if len(reads) else None
    hi = pc.max(reads).as_py() if len(reads) else None
    reach = size if sliding else size + step  # how far before a read its window's events can be
    files = accepted_files(root, view, None if lo is None else lo - reach, hi)
    entity_type = accepted_schema(view).field(view.entity_key).type
    labels = pa.table({"rid": pa.array(range(len(reads)), pa.int64()), "e": pc.cast(label_entities, entity_type),
                       "tr": reads})
    con = duckdb.connect()
    try:
        con.register("label_rows", labels)
        _load_events(con, root, view, files, aggs)
        # the labels that read something: an entity, an instant >= 0 (and for fixed windows, one that has ended)
        con.execute("CREATE TEMP TABLE labels AS SELECT * FROM label_rows WHERE e IS NOT NULL AND tr >= 0").fetchall()
        if sliding:
            plan, pairs, rows = _sliding_plan(con, size)
            if progress:
                progress(f"{view.name}: request-time read of {len(reads):,} labels over {len(files)} accepted-log "
                         f"file(s): sliding, {plan} plan ({pairs:,} candidate pairs, {rows:,} rows)")
            sql = _sliding_join(aggs, size) if plan == "join" else _sliding_window(aggs, size)
        else:
            if progress:
                progress(f"{view.name}: request-time read of {len(reads):,} labels over {len(files)} accepted-log "
                         f"file(s): {window.type} windows")
            sql = _fixed(aggs, size, step)
        table = con.sql(sql).to_arrow_table()
    except duckdb.Error as exc:
        raise OfflineStoreError(f"cannot build the request-time training set of {view.name} v{view.version} "
                                f"from {root.display(accepted_dir(root, view))}: {exc}") from exc
    finally:
        con.close()
    columns = [pc.cast(table[f"f{i}"], field.type) for i, field in enumerate(aggs.output_schema(features))]
    return pa.table([*columns, pc.cast(table["ft"], TS_TYPE)],
                    schema=pa.schema([*aggs.output_schema(features), pa.field("feature_ts", TS_TYPE)]))


def _outer(aggs: _Aggregates, features_from: str, feature_ts: str, on: str) -> str:
    """Every label row in order, with the features its read found (the folds of nothing where the window
    exists but found no event; nulls where there is no window) and its feature_ts."""
    outs = []
    for i, agg in enumerate(aggs.aggs):
        empty = "0" if agg.function in ("count", "count_distinct", "sum") else "NULL"
        outs.append(f"CASE WHEN x.rid IS NOT NULL THEN coalesce(a.f{i}, {empty}) END AS f{i}")
    return f"""
        SELECT l.rid, {", ".join(outs)}, CASE WHEN x.rid IS NOT NULL THEN {feature_ts} END AS ft
        FROM label_rows l LEFT JOIN reads x ON x.rid = l.rid
        LEFT JOIN ({features_from}) a ON {on}
        ORDER BY l.rid
    """


def _sliding_plan(con: Any, size: int) -> tuple[str, int, int]:
    """("join" or "window", candidate pairs of the join plan, rows of the window plan)."""
    events, labels, pairs = con.execute(f"""
        WITH lb AS (SELECT e, b, count(*) AS n FROM (
                        SELECT e, tr // {size} AS b FROM labels UNION ALL SELECT e, tr // {size} - 1 FROM labels)
                    GROUP BY ALL)
        SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM labels), coalesce(sum(lb.n), 0)
        FROM events v JOIN lb ON lb.e = v.e AND lb.b = v.ts // {size}
    """).fetchall()[0]
    rows = int(events) + int(labels)
    return ("join" if pairs <= JOIN_PAIRS_PER_ROW * rows else "window"), int(pairs), rows


def _sliding_join(aggs: _Aggregates, size: int) -> str:
    found = f"""
        SELECT lb.rid, {", ".join(aggs.select())}
        FROM (SELECT rid, e, tr, tr // {size} AS b FROM labels
              UNION ALL SELECT rid, e, tr, tr // {size} - 1 FROM labels) lb
        JOIN (SELECT *, 1 AS k, ts // {size} AS b FROM events) v ON v.e = lb.e AND v.b = lb.b
        WHERE v.ts >= lb.tr - {size} AND v.ts <= lb.tr
        GROUP BY lb.rid
    """
    return "WITH reads AS (SELECT rid, tr FROM labels)" + _outer(aggs, found, "x.tr", "a.rid = l.rid")


def _sliding_window(aggs: _Aggregates, size: int) -> str:
    event_cols = ", ".join(["ts AS t", "1 AS k", *aggs.alias.values(), *(["ord"] if aggs.needs_order else [])])
    label_cols = ", ".join(["tr AS t", "NULL AS k", *(f"NULL AS {c}" for c in aggs.alias.values()),
                            *(["NULL::HUGEINT AS ord"] if aggs.needs_order else [])])
    found = f"""
        WITH codes AS (SELECT e, row_number() OVER () AS code FROM (SELECT DISTINCT e FROM events)),
             rows AS (SELECT c.code, NULL::BIGINT AS rid, {event_cols} FROM events v JOIN codes c ON c.e = v.e
                      UNION ALL
                      SELECT c.code, l.rid, {label_cols} FROM labels l LEFT JOIN codes c ON c.e = l.e)
        SELECT * FROM (
            SELECT rid, {", ".join(aggs.select(" OVER w"))} FROM rows
            WINDOW w AS (PARTITION BY code ORDER BY t RANGE BETWEEN {size} PRECEDING AND CURRENT ROW))
        WHERE rid IS NOT NULL
    """
    return "WITH reads AS (SELECT rid, tr FROM labels)" + _outer(aggs, found, "x.tr", "a.rid = l.rid")


def _fixed(aggs: _Aggregates, size: int, step: int) -> str:
    buckets = -(-size // step)  # the step buckets a window covers
    found = f"""
        SELECT w.e, w.s, {", ".join(aggs.select())}
        FROM (SELECT e, s, s // {step} + i AS b FROM (SELECT DISTINCT e, s FROM reads), range({buckets}) r(i)) w
        JOIN (SELECT *, 1 AS k, ts // {step} AS b FROM events) v ON v.e = w.e AND v.b = w.b
        WHERE v.ts < w.s + {size} AND v.fws <= w.s
        GROUP BY w.e, w.s
    """
    reads = f"SELECT rid, e, (tr - {size}) // {step} * {step} AS s FROM labels WHERE tr >= {size}"
    return f"WITH reads AS ({reads})" + _outer(aggs, found, f"x.s + {size}", "a.e = l.e AND a.s = x.s")
