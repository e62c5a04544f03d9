"""Noticing an online store that lost its data, and refilling it from the log.

Redis without persistence that restarts, a failover that promotes an empty replica,
or a ``FLUSHALL`` by mistake all leave the pipeline writing into a store that no
longer holds the entities it did not touch since. The pipeline keeps a marker key per
view it writes (:func:`freshet.features.online_layout.marker_key`); :class:`StoreGuard`
checks the markers when the writer connects, after every outage and every
``recheck_s`` seconds. A missing marker means the store lost (or never had) the view's
values: the view is materialized from the Parquet log (:mod:`freshet.pipelines.materialize`)
before the writer resumes, and the marker is set again. Without a log to refill from,
the loss is logged as an error and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pyarrow as pa
import redis

from freshet.features.definitions import FeatureView
from freshet.features.errors import OfflineStoreError, OnlineStoreError
from freshet.features.log_store import RootLike, open_log_root
from freshet.features.online_layout import marker_key
from freshet.pipelines.materialize import materialize_view
from freshet.pipelines.stats import PipelineStats

log = logging.getLogger("freshet.online")


class StoreGuard:
    def __init__(self, views: list[FeatureView], offline_root: RootLike | None, redis_url: str,
                 stats: PipelineStats, *, recheck_s: float = 10.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._views = views
        self._root = open_log_root(offline_root) if offline_root is not None else None
        self._url = redis_url
        self._stats = stats
        self._recheck_s = recheck_s
        self._clock = clock
        self._due = True  # check at the first write: a store may be new, or emptied while we were away
        self._last = 0.0

    def outage(self) -> None:
        """Redis failed a write: check again before the next one."""
        self._due = True

    def check(self, client: redis.Redis) -> bool:
        """Called by the writer before it sends a batch; raises what Redis raises (an outage).
        True when a view's marker was missing: the writer then sends again what the log lacks."""
        now = self._clock()
        if not self._due and now - self._last < self._recheck_s:
            return False
        keys = [marker_key(v.name, v.version) for v in self._views]
        missing = [v for v, key in zip(self._views, keys, strict=True) if not client.exists(key)]
        for view in missing:
            self._refill(view)
            client.set(marker_key(view.name, view.version), str(int(time.time() * 1000)))
        self._due = False
        self._last = now
        return bool(missing)

    def _refill(self, view: FeatureView) -> None:
        if self._root is None:
            self._stats.online_lost += 1
            log.error("Redis holds no marker for view %s v%d: it lost the view's values (or never had "
                      "them), and this run writes no log to refill it from; run `freshet materialize "
                      "--view %s` against the log", view.name, view.version, view.name)
            return
        from freshet.pipelines.online_sink import RedisOnlineWriter

        writer = RedisOnlineWriter(self._url, background=False, batch_size=1 << 30)
        try:
            summary = materialize_view(self._root, view, writer)
        except (OSError, pa.ArrowException, OfflineStoreError) as exc:  # the marker stays unset: tried again
            raise OnlineStoreError(f"Redis lost view {view.name} v{view.version} and refilling it from the log "
                                   f"under {self._root} failed: {exc}") from exc
        finally:
            writer.close()
        if summary.entities:
            self._stats.online_refills += 1
            self._stats.online_refilled += summary.written
            log.warning("Redis held no marker for view %s v%d (a new or emptied store): refilled %d of "
                        "%d entities from the log in %.1fs", view.name, view.version, summary.written,
                        summary.entities, summary.seconds)
