"""Point-in-time-correct training sets from the Parquet log.

For a label row (entity, t) and a view, the value is the log row with the
largest ``feature_ts <= t`` (``< t`` with ``exclusive``); ties go to the larger
source offset; a value older than the view's TTL (``t - feature_ts > ttl``) is
null; an entity with no history is null. The online store holds the same value
at time t, so online and offline agree.

Engine, chosen by measurement (bench/RESULTS.md, 1M labels x 10M log rows):
DuckDB (default) was 3.7x faster than the pure-pyarrow join below, which stays
as ``engine="pyarrow"``. DuckDB's ASOF JOIN sorts its inputs itself (it does not
trust them to be sorted) but picks an arbitrary row among equal times, so the
log is first reduced to one row per (entity, feature_ts) - the one with the
largest (source offset, source partition) - and the TTL is applied after the
join. The pyarrow engine puts label and log rows in one table, sorts it
*explicitly* by (entity, time, kind, source offset, source partition) and
carries the latest log row forward with ``fill_null_forward``. Both are checked
against a brute-force reference by the same property test. Only the
date partitions that can hold a value for the labels are read: from the
earliest label time minus the TTL to the latest label time.

Request-time views (``as_of: request``) are not read from the values log: each
label is answered by the read-as-of rule at its own time over the view's
accepted-events log (:mod:`freshet.features.training_as_of`, DuckDB whichever
engine is asked; no TTL, ``exclusive`` reads as of ``t - 1`` ms).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from freshet.features.definitions import FeatureView
from freshet.features.durations import parse_event_time_ms
from freshet.features.errors import DefinitionError, OfflineStoreError
from freshet.features.log_store import LogRoot, open_log_root
from freshet.features.offline_layout import TS_TYPE, list_parts, view_schema
from freshet.features.references import parse_references
from freshet.features.training_as_of import request_time_features


@dataclass(frozen=True)
class FeatureRef:
    view: FeatureView = field(compare=False, hash=False)  # at the version asked for
    feature: str = ""
    label: str = ""  # 'view', or 'view@N' for an older version

    @property
    def full_name(self) -> str:
        return f"{self.label}__{self.feature}"


def resolve_features(views: dict[str, FeatureView], names: Sequence[str]) -> list[FeatureRef]:
    """``view``, ``view:feature``, ``view@N`` or ``view@N:feature`` (features.references)."""
    return list(dict.fromkeys(FeatureRef(ref.view, f, ref.label)
                              for ref in parse_references(views, names) for f in ref.features))


def output_names(refs: list[FeatureRef], full_feature_names: bool) -> dict[FeatureRef, str]:
    """``view__feature`` when asked, and whenever two requested views share a feature name."""
    counts: dict[str, set[str]] = {}
    for ref in refs:
        counts.setdefault(ref.feature, set()).add(ref.label)
    return {ref: ref.full_name if full_feature_names or len(counts[ref.feature]) > 1 else ref.feature
            for ref in refs}


def _to_ms(column: pa.ChunkedArray | pa.Array, what: str) -> pa.Array:
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    kind = column.type
    if pa.types.is_timestamp(kind):
        return pc.cast(pc.cast(column, pa.timestamp("ms", tz=kind.tz or "UTC")), pa.int64())
    if pa.types.is_integer(kind):
        return pc.cast(column, pa.int64())
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _text_to_ms(column, what)
    raise OfflineStoreError(f"{what}: column type {kind} is not a timestamp, int (epoch ms) or ISO-8601 text")


def _text_to_ms(column: pa.Array, what: str) -> pa.Array:
    """Text times by the one grammar of :func:`parse_event_time_ms` (epoch ms digits, ISO-8601 with
    ``Z``, an offset or none (UTC), fractions): Arrow's casts where the whole column has one form,
    else row by row."""
    for target in (pa.timestamp("ms", tz="UTC"), pa.timestamp("ms")):
        try:
            return pc.cast(pc.cast(column, target), pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
    out: list[int | None] = []
    for value in column.to_pylist():
        try:
            out.append(None if value is None else parse_event_time_ms(value))
        except ValueError as exc:
            raise OfflineStoreError(f"{what}: {exc}") from None
    return pa.array(out, type=pa.int64())


def read_view_log(root: LogRoot | str | Path, view: FeatureView, columns: list[str], from_ms: int | None,
                  to_ms: int | None) -> pa.Table:
    """The view's log rows with feature_ts in [from_ms, to_ms], reading only the dates needed."""
    log_root = open_log_root(root)
    schema = view_schema(view)
    files = view_files(log_root, view, from_ms, to_ms)
    wanted = [view.entity_key, "feature_ts", "source_partition", "source_offset", *columns]
    if not files:
        return pa.table({n: pa.array([], type=schema.field(n).type) for n in wanted})
    try:
        return log_root.dataset(files, schema).to_table(columns=wanted)
    except (OSError, pa.ArrowInvalid) as exc:
        raise OfflineStoreError(f"cannot read the log of {view.name} v{view.version} under {log_root}: {exc}") from exc


def as_of_indices(label_entities: pa.Array, label_ts: pa.Array, log_entities: pa.Array, log_ts: pa.Array,
                  log_partitions: pa.Array, log_offsets: pa.Array, *, exclusive: bool) -> pa.Array:
    """For each label row, the index of its as-of log row (or null)."""
    n_labels, n_log = len(label_ts), len(log_ts)
    entity_type = log_entities.type if n_log else label_entities.type
    # entities as integer codes: sorting ints is much faster than sorting strings
    codes = pc.dictionary_encode(pa.concat_arrays([pc.cast(label_entities, entity_type),
                                                   pc.cast(log_entities, entity_type)])).indices
    # labels sort after log rows with the same time (<= t), or before them (< t) when exclusive
    label_kind, log_kind = (0, 1) if exclusive else (1, 0)
    combined = pa.table({
        "entity": codes,
        "t": pa.concat_arrays([pc.cast(label_ts, pa.int64()), pc.cast(log_ts, pa.int64())]),
        "kind": pa.concat_arrays([_filled(n_labels, label_kind, pa.int8()), _filled(n_log, log_kind, pa.int8())]),
        "p": pa.concat_arrays([pa.nulls(n_labels, pa.int32()), pc.cast(log_partitions, pa.int32())]),
        "o": pa.concat_arrays([pa.nulls(n_labels, pa.int64()), pc.cast(log_offsets, pa.int64())]),
        "log_idx": pa.concat_arrays([pa.nulls(n_labels, pa.int64()), _arange(n_log)]),
        "label_idx": pa.concat_arrays([_arange(n_labels), pa.nulls(n_log, pa.int64())]),
    })
    order = pc.sort_indices(combined, sort_keys=[("entity", "ascending"), ("t", "ascending"),
                                                 ("kind", "ascending"), ("o", "ascending"), ("p", "ascending")],
                            null_placement="at_start")
    ordered = combined.take(order)
    carried = pc.fill_null_forward(ordered["log_idx"].combine_chunks())
    log_codes = codes.slice(n_labels)
    carried_entity = pc.take(log_codes, carried) if n_log else pa.nulls(len(carried), codes.type)
    is_label = pc.is_valid(ordered["label_idx"])
    same_entity = pc.fill_null(pc.equal(carried_entity, ordered["entity"]), False)
    picked = pc.if_else(same_entity, carried, pa.scalar(None, pa.int64()))
    label_positions = pc.filter(ordered["label_idx"], is_label)
    picked_for_labels = pc.filter(picked, is_label)
    # back to the labels' own order
    back = pc.sort_indices(label_positions)
    return pc.take(picked_for_labels, back).combine_chunks()


def _filled(n: int, value: int, kind: pa.DataType) -> pa.Array:
    return pc.fill_null(pa.nulls(n, kind), pa.scalar(value, kind))


def _arange(n: int) -> pa.Array:
    """0..n-1 without a Python loop."""
    if n == 0:
        return pa.array([], pa.int64())
    return pc.subtract(pc.cumulative_sum(_filled(n, 1, pa.int64())), 1)


def view_files(root: LogRoot, view: FeatureView, from_ms: int | None, to_ms: int | None) -> list[str]:
    return list_parts(root, view, from_ms=from_ms, to_ms=to_ms)


def duckdb_as_of(label_entities: pa.Array, label_ts: pa.Array, view: FeatureView, root: LogRoot,
                 files: list[str], features: list[str], *, exclusive: bool) -> pa.Table:
    """Per label row (in order): the as-of features and feature_ts (ms), TTL applied."""
    import duckdb

    con = duckdb.connect()
    schema = view_schema(view)
    entity_type = schema.field(view.entity_key).type
    labels = pa.table({"rid": _arange(len(label_ts)), "e": pc.cast(label_entities, entity_type),
                       "t": pc.cast(label_ts, pa.int64())})
    con.register("labels", labels)
    feats = ", ".join(f'"{f}"' for f in features)
    picked = ", ".join(f'arg_max("{f}", rank) as "{f}"' for f in features)
    outs = ", ".join(f'case when l.t - b.ft <= {view.ttl} then b."{f}" end as "{f}"' for f in features)
    if files and root.is_local:
        # DuckDB's own Parquet reader: it decodes row groups in parallel (measured faster than scanning Arrow)
        paths = "[" + ", ".join("'" + p.replace("'", "''") + "'" for p in files) + "]"
        log_sql = (f'select "{view.entity_key}" as e, epoch_ms(feature_ts) as ft, {feats}, '
                   f"source_offset::HUGEINT * 2147483648 + source_partition as rank from read_parquet({paths})")
    elif files:
        # object storage: pyarrow reads the needed columns (DuckDB's httpfs is not used), copied once into a
        # DuckDB table so the join runs on all cores (a join over the Arrow scan ran ~1.6x slower)
        con.register("log_files", root.dataset(files, schema))
        con.execute(f'create temp table log_rows as select "{view.entity_key}" as e, epoch_ms(feature_ts) as ft, '
                    f"{feats}, source_offset::HUGEINT * 2147483648 + source_partition as rank from log_files")
        log_sql = "select * from log_rows"
    else:
        empty = pa.table({"e": pa.array([], entity_type), "ft": pa.array([], pa.int64()),
                          **{f: pa.array([], schema.field(f).type) for f in features},
                          "rank": pa.array([], pa.int64())})
        con.register("empty_log", empty)
        log_sql = "select * from empty_log"
    condition = "l.t > b.ft" if exclusive else "l.t >= b.ft"
    sql = f"""
        with log as ({log_sql}),
             best as (select e, ft, {picked} from log group by e, ft)
        select l.rid, case when l.t - b.ft <= {view.ttl} then b.ft end as ft, {outs}
        from labels l asof left join best b on l.e = b.e and {condition}
        order by l.rid
    """
    table = con.sql(sql).to_arrow_table()
    con.close()
    return table


def get_historical_features(labels: pa.Table | Any, features: Sequence[str], views: dict[str, FeatureView],
                            offline_root: LogRoot | str | Path, *, entity_column: str | None = None,
                            timestamp_column: str = "ts", exclusive: bool = False,
                            full_feature_names: bool = False, engine: str = "duckdb",
                            progress: Callable[[str], None] | None = None) -> pa.Table:
    """The labels with each requested feature as of each row's timestamp. ``engine``: ``duckdb`` (the
    default; ``pyarrow`` where DuckDB is not installed, as in a client-only install) or ``pyarrow``, for
    the values-log join of ``last_event`` views. Request-time views (``as_of: request``) are read by the
    as-of rule over their accepted-events log (:func:`~freshet.features.training_as_of.request_time_features`):
    ``exclusive`` reads them as of ``t - 1`` ms, and their TTL does not null a value."""
    root = open_log_root(offline_root)
    if engine == "duckdb" and not _duckdb_installed():
        engine = "pyarrow"
    table = _as_table(labels)
    refs = resolve_features(views, features)
    if not refs:
        raise DefinitionError("no features requested")
    if timestamp_column not in table.column_names:
        raise OfflineStoreError(f"labels have no timestamp column {timestamp_column!r}; columns: {table.column_names}")
    label_ts = _to_ms(table[timestamp_column], f"labels.{timestamp_column}")
    if label_ts.null_count:
        raise OfflineStoreError(f"labels.{timestamp_column} has {label_ts.null_count} null timestamp(s)")
    names = output_names(refs, full_feature_names)
    out = table
    by_view: dict[str, list[FeatureRef]] = {}
    for ref in refs:
        by_view.setdefault(ref.label, []).append(ref)
    lo = pc.min(label_ts).as_py() if len(label_ts) else None
    hi = pc.max(label_ts).as_py() if len(label_ts) else None
    for view_name, view_refs in by_view.items():
        view = view_refs[0].view
        key = entity_column or view.entity_key
        if key not in table.column_names:
            raise OfflineStoreError(f"labels have no entity column {key!r} for view {view_name!r}; "
                                    f"columns: {table.column_names}")
        if view.as_of == "request":
            if not _duckdb_installed():
                raise OfflineStoreError(f"view {view_name!r} reads as of the request time (as_of: request): its "
                                        "training sets need DuckDB (pip install duckdb)")
            read = request_time_features(table[key].combine_chunks(), label_ts, view, root,
                                         [r.feature for r in view_refs], exclusive=exclusive, progress=progress)
            for ref in view_refs:
                out = out.append_column(names[ref], read[ref.feature])
            out = out.append_column(f"{view_name}__feature_ts", read["feature_ts"])
            continue
        if progress and not list_parts(root, view):
            progress(f"warning: no log of {view_name} v{view.version} under {root}: its features are null "
                     "(check FRESHET_OFFLINE_ROOT / --offline-root)")
        if engine == "duckdb":
            files = view_files(root, view, None if lo is None else lo - view.ttl, hi)
            if progress:
                progress(f"{view_name}: as-of join of {len(table):,} labels over {len(files)} log file(s)")
            joined = duckdb_as_of(table[key].combine_chunks(), label_ts, view, root, files,
                                  [r.feature for r in view_refs], exclusive=exclusive)
            for ref in view_refs:
                out = out.append_column(names[ref], joined[ref.feature])
            out = out.append_column(f"{view_name}__feature_ts", pc.cast(joined["ft"], TS_TYPE))
            continue
        if engine != "pyarrow":
            raise DefinitionError(f"unknown engine {engine!r}; use 'duckdb' or 'pyarrow'")
        if progress:
            progress(f"{view_name}: reading the log")
        log = read_view_log(root, view, [r.feature for r in view_refs],
                            None if lo is None else lo - view.ttl, hi)
        if progress:
            progress(f"{view_name}: joining {len(table):,} labels with {len(log):,} log rows")
        log_ts = pc.cast(log["feature_ts"].combine_chunks(), pa.int64())
        idx = as_of_indices(table[key].combine_chunks(), label_ts, log[view.entity_key].combine_chunks(), log_ts,
                            log["source_partition"].combine_chunks(), log["source_offset"].combine_chunks(),
                            exclusive=exclusive)
        found_ts = pc.take(log_ts, idx)
        fresh = pc.less_equal(pc.subtract(label_ts, found_ts), view.ttl)
        keep = pc.fill_null(fresh, False)
        for ref in view_refs:
            values = pc.take(log[ref.feature].combine_chunks(), idx)
            out = out.append_column(names[ref], pc.if_else(keep, values, pa.scalar(None, values.type)))
        ts_name = f"{view_name}__feature_ts"
        out = out.append_column(ts_name, pc.cast(pc.if_else(keep, found_ts, pa.scalar(None, pa.int64())), TS_TYPE))
    return out


def _duckdb_installed() -> bool:
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


def _as_table(labels: Any) -> pa.Table:
    if isinstance(labels, pa.Table):
        return labels
    if isinstance(labels, (str, Path)):
        return pq.read_table(labels)
    if hasattr(labels, "to_arrow"):
        return labels.to_arrow()
    try:
        return pa.Table.from_pandas(labels, preserve_index=False)
    except Exception as exc:
        raise OfflineStoreError(f"labels must be an Arrow table, a pandas DataFrame or a Parquet path; "
                                f"got {type(labels).__name__}") from exc
