"""The Quix sink of one view: each emitted value to Redis and to the Parquet log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from quixstreams.sinks import BaseSink, SinkBackpressureError

from features.definitions import FeatureView
from features.online_layout import online_key
from pipelines.offline_sink import ParquetLogWriter
from pipelines.online_sink import OnlineStoreUnavailable, RedisOnlineWriter, encode_fields
from pipelines.stats import PipelineStats

log = logging.getLogger(__name__)

BACKPRESSURE_RETRY_S = 2.0

# the value a view's branch hands to its sink
# (entity, feature_ts, window_start, window_end, features dict, source partition, source offset)
EmittedValue = tuple[Any, int, int, int, dict[str, Any], int, int]


class FeatureSink(BaseSink):
    def __init__(self, view: FeatureView, online: RedisOnlineWriter | None,
                 offline: ParquetLogWriter | None, stats: PipelineStats,
                 emitter: Callable[[dict[str, Any], Any], EmittedValue | None]) -> None:
        super().__init__()
        self.view = view
        self._online = online
        self._offline = offline
        self._stats = stats
        self._names = view.feature_names()
        self._ttl = view.ttl
        self._emit = emitter
        self._emitted = stats.emitted
        self._skipped_seen = 0

    def add(self, value: dict[str, Any], key: Any, timestamp: int, headers: Any, topic: str,
            partition: int, offset: int) -> None:
        """``value`` is a window result; ``partition`` the one the windows read."""
        emitted = self._emit(value, key)
        if emitted is None:
            return
        entity, feature_ts, start, end, features, src_partition, src_offset = emitted
        self._emitted[self.view.name] += 1
        if self._offline is not None:
            row = (entity, feature_ts, start, end, *(features[n] for n in self._names),
                   src_partition, src_offset, int(time.time() * 1000))
            self._offline.add(row, partition, src_partition, src_offset, feature_ts)
        if self._online is not None:
            self._online.add(online_key(self.view.name, self.view.version, entity), feature_ts, src_offset,
                             self._ttl, encode_fields(features, start, end))

    def flush(self) -> None:
        if self._online is not None:
            try:
                self._online.flush()
            except OnlineStoreUnavailable as exc:
                self._stats.backpressured += 1
                log.warning("view %s: %s; pausing input for %.0fs (nothing is lost)",
                            self.view.name, exc, BACKPRESSURE_RETRY_S)
                self.on_paused()
                raise SinkBackpressureError(retry_after=BACKPRESSURE_RETRY_S) from exc
        if self._offline is not None:
            self._stats.offline_rows += self._offline.checkpoint()
            self._stats.offline_skipped += self._offline.skipped - self._skipped_seen
            self._skipped_seen = self._offline.skipped

    def on_paused(self) -> None:
        if self._offline is not None:
            self._offline.discard_uncommitted()
        if self._online is not None:
            self._online.discard()
