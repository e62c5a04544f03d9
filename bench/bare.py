"""The baseline: a bare Quix Streams application computing the same windows as the views.

Same windows, grace and emit modes as the feature views, built-in ``Count`` and
``Sum`` plus a small custom count-distinct aggregator (Quix's ``Collect`` is not
allowed with ``.current()``), the same consumer settings as Freshet, changelog
topics on, and no output at all: emitted windows are only counted. It trusts the
message key (no re-keying) and its validation is a few type checks, with no
dead-letter or late topic.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.dataframe import StreamingDataFrame
from quixstreams.dataframe.windows.aggregations import BaseAggregator, Count, Sum
from quixstreams.models import TimestampType
from quixstreams.models.serializers import Deserializer, SerializationContext

from freshet.features.definitions import FeatureView, HoppingWindow, SlidingWindow, TumblingWindow


class JsonOrNone(Deserializer):
    """JSON objects as dicts; anything else (bad JSON, not an object) as None, filtered later."""

    def __call__(self, value: bytes, ctx: SerializationContext) -> dict[str, Any] | None:
        try:
            event = json.loads(value)
        except (ValueError, UnicodeDecodeError):
            return None
        return event if isinstance(event, dict) else None


class CountDistinct(BaseAggregator):  # type: ignore[type-arg]
    """Distinct values of a column, kept as a dict like Freshet's count_distinct (never mutated)."""

    def __init__(self, column: str) -> None:
        self.column = column

    @property
    def state_suffix(self) -> str:
        return f"count_distinct/{self.column}"

    def initialize(self) -> dict[str, int]:
        return {}

    def agg(self, old: dict[str, int], new: Any, timestamp: int) -> dict[str, int]:
        value = new.get(self.column)
        if value is None:
            return old
        key = str(value)
        return old if key in old else {**old, key: 1}

    def merge(self, a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
        return {**a, **b}

    def result(self, value: dict[str, int]) -> int:
        return len(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def make_validator(views: list[FeatureView]) -> Any:
    """Keep events with an int timestamp, a key, and a number in every summed column."""
    source = views[0].source
    ts_field = source.timestamp
    key_field = views[0].entity_key
    numeric = sorted({a.column for v in views for a in v.aggregations if a.function == "sum" and a.column})

    def valid(event: dict[str, Any] | None) -> bool:
        if event is None:
            return False
        ts = event.get(ts_field)
        if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
            return False
        if not event.get(key_field):
            return False
        return all(_is_number(event.get(column)) for column in numeric)

    return valid


def make_timestamp_extractor(ts_field: str) -> Any:
    def extract(value: Any, _headers: Any, timestamp: int, _kind: TimestampType) -> int:
        if isinstance(value, dict):
            ts = value.get(ts_field)
            if isinstance(ts, int) and not isinstance(ts, bool) and ts >= 0:
                return ts
        return timestamp  # invalid records are filtered out before any window

    return extract


def _aggregators(view: FeatureView) -> dict[str, BaseAggregator]:  # type: ignore[type-arg]
    out: dict[str, BaseAggregator] = {}  # type: ignore[type-arg]
    for agg in view.aggregations:
        if agg.function == "count":
            out[agg.name] = Count(agg.column)
        elif agg.function == "sum":
            out[agg.name] = Sum(agg.column)
        elif agg.function == "count_distinct" and agg.column:
            out[agg.name] = CountDistinct(agg.column)
        else:
            raise SystemExit(f"the bare baseline has no {agg.function!r} aggregation (view {view.name})")
    return out


def _window(sdf: StreamingDataFrame, view: FeatureView, on_late: Any) -> StreamingDataFrame:
    window = view.window
    name = f"bare_{view.name}"
    definition: Any
    if isinstance(window, TumblingWindow):
        definition = sdf.tumbling_window(window.size, grace_ms=view.grace, name=name, on_late=on_late)
    elif isinstance(window, HoppingWindow):
        definition = sdf.hopping_window(window.size, window.step, grace_ms=view.grace, name=name,
                                        on_late=on_late)
    elif isinstance(window, SlidingWindow):
        definition = sdf.sliding_window(window.size, grace_ms=view.grace, name=name, on_late=on_late)
    else:  # pragma: no cover
        raise SystemExit(f"unsupported window {window!r}")
    aggregated = definition.agg(**_aggregators(view))
    return aggregated.final() if view.emit == "final" else aggregated.current()


class BareApp:
    """One bare application over the views' topic; ``read`` counts every record it sees."""

    def __init__(self, views: list[FeatureView], bootstrap: str, consumer_group: str, state_dir: Path,
                 commit_interval_s: float = 1.0, session_timeout_ms: int = 6000, rekey: bool = False) -> None:
        self.read = 0
        self.windowed = 0
        self.emitted: Counter[str] = Counter()
        self.late: Counter[str] = Counter()
        self.app = Application(
            broker_address=bootstrap,
            consumer_group=consumer_group,
            auto_offset_reset="earliest",
            state_dir=str(state_dir),
            commit_interval=commit_interval_s,
            processing_guarantee="at-least-once",
            consumer_extra_config={"session.timeout.ms": session_timeout_ms, "allow.auto.create.topics": False},
            producer_extra_config={"linger.ms": 10},
            loglevel=None,
        )
        source = views[0].source
        topic = self.app.topic(source.topic, value_deserializer=JsonOrNone(), key_deserializer="bytes",
                               timestamp_extractor=make_timestamp_extractor(source.timestamp))
        sdf = self.app.dataframe(topic)
        sdf = sdf.update(self._count_read).filter(make_validator(views))
        if rekey:  # the same re-keying as Freshet's default: Quix's group_by through a repartition topic
            key_field = views[0].entity_key
            sdf = sdf.group_by(lambda v: str(v[key_field]), name=f"rekey_{key_field}")
        sdf = sdf.update(self._count_windowed)
        for view in views:
            _window(sdf, view, self._late_counter(view.name)).update(self._emit_counter(view.name))

    def _count_read(self, _value: Any) -> None:
        self.read += 1

    def _count_windowed(self, _value: Any) -> None:
        self.windowed += 1

    def _emit_counter(self, name: str) -> Any:
        emitted = self.emitted

        def count(_value: Any) -> None:
            emitted[name] += 1

        return count

    def _late_counter(self, name: str) -> Any:
        late = self.late

        def count(*_args: Any) -> bool:
            late[name] += 1
            return False  # counted, not logged (Freshet sends them to its late topic instead)

        return count

    def run(self) -> None:
        self.app.run()
