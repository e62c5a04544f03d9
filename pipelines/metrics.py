"""Prometheus metrics of a pipeline run (``freshet run --metrics-port``, ``freshet replay --metrics-port``).

A custom collector reads the run's :class:`~freshet.pipelines.stats.PipelineStats` when
Prometheus scrapes, so the hot loop pays nothing per event for metrics: the counters it
already keeps are the metrics. Names follow Prometheus conventions (``_total`` counters,
base units, ``freshet_`` prefix); labels are views, reasons, sinks and partitions, never
entities, so cardinality stays bounded. Served by ``prometheus_client``'s own HTTP server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from freshet.features.definitions import FeatureView
from freshet.pipelines.stats import DELAY_BUCKETS, PipelineStats

log = logging.getLogger("freshet.metrics")


class PipelineCollector(Collector):
    def __init__(self, stats: PipelineStats, views: list[FeatureView], *, mode: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._stats = stats
        self._views = views
        self._mode = mode
        self._clock = clock
        # the run's counts go back to the last commit when backpressure rewinds the input (each event is
        # counted once); Prometheus counters must never go down, so each is exported as its high-water mark
        self._high: dict[tuple[str, tuple[str, ...]], float] = {}

    def _mono(self, name: str, labels: tuple[str, ...], value: Any) -> float:
        key = (name, labels)
        high = max(self._high.get(key, 0.0), float(value))
        self._high[key] = high
        return high

    def collect(self) -> Iterator[Any]:
        s = self._stats
        snap = s.snapshot()
        info = GaugeMetricFamily("freshet_pipeline_info", "the run: mode (live or replay) and source topic",
                                 labels=["mode", "topic"])
        info.add_metric([self._mode, self._views[0].source.topic], 1)
        yield info
        yield _counter("freshet_events_read", "source records read", self._mono("read", (), snap["read"]))
        yield _counter("freshet_events_valid", "source records that passed validation",
                       self._mono("valid", (), snap["valid"]))
        invalid = CounterMetricFamily("freshet_events_invalid", "records sent to the dead-letter topic, by reason",
                                      labels=["reason"])
        for reason, n in sorted(snap["invalid_by_reason"].items()):  # type: ignore[attr-defined]
            invalid.add_metric([reason], self._mono("invalid", (reason,), n))
        yield invalid
        yield _counter("freshet_events_windowed", "valid events that reached the window operator",
                       self._mono("windowed", (), snap["windowed"]))
        yield _counter("freshet_events_duplicate", "records the re-key hop delivered twice (skipped)",
                       self._mono("duplicates", (), snap["duplicates_skipped"]))
        late = CounterMetricFamily("freshet_late_events", "(event, window) pairs sent to the late topic, by view",
                                   labels=["view"])
        emitted = CounterMetricFamily("freshet_values_emitted", "feature values emitted, by view", labels=["view"])
        late_by, emitted_by = snap["late_by_view"], snap["emitted_by_view"]
        for view in self._views:
            late.add_metric([view.name], self._mono("late", (view.name,), late_by.get(view.name, 0)))  # type: ignore[attr-defined]
            emitted.add_metric([view.name], self._mono("emitted", (view.name,),
                                                       emitted_by.get(view.name, 0)))  # type: ignore[attr-defined]
        yield late
        yield emitted
        yield _counter("freshet_online_writes", "values written to Redis (after coalescing)", snap["online_writes"])
        yield _counter("freshet_offline_rows", "rows made durable in the Parquet log", snap["offline_rows"])
        yield _counter("freshet_backpressure_cycles", "times Redis was unavailable and the input was rewound",
                       snap["backpressured"])
        yield _counter("freshet_online_refills", "views refilled from the log after Redis lost them",
                       snap["online_refills"])
        flush_s = CounterMetricFamily("freshet_sink_flush_seconds", "seconds spent making outputs durable, by sink",
                                      labels=["sink"])
        flushes = CounterMetricFamily("freshet_sink_flushes", "flushes, by sink (rate of seconds / rate of "
                                      "flushes = mean flush latency)", labels=["sink"])
        for sink in ("redis", "parquet", "kafka"):
            flush_s.add_metric([sink], s.sink_seconds.get(sink, 0.0))
            flushes.add_metric([sink], s.sink_flushes.get(sink, 0))
        yield flush_s
        yield flushes
        delay = HistogramMetricFamily("freshet_sink_write_delay_seconds", "how long values waited between being "
                                      "emitted and being durable in a sink (per batch, its oldest value)",
                                      labels=["sink"])
        for sink, hist in sorted(s.write_delay.items()):
            running, buckets = 0, []
            for bound, n in zip([*DELAY_BUCKETS, float("inf")], hist.counts, strict=True):
                running += n
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), running))
            delay.add_metric([sink], buckets, hist.total)
        yield delay
        yield _counter("freshet_online_lost", "views Redis lost with no log to refill them from (run --no-offline)",
                       snap["online_lost"])
        lag = GaugeMetricFamily("freshet_consumer_lag_records", "records behind the true end offset, by partition "
                                "(committed offsets of the group; measured every progress interval)",
                                labels=["topic", "partition"])
        for (topic, partition), behind in sorted(s.lag_by_partition.items()):
            lag.add_metric([topic, str(partition)], behind)
        yield lag
        newest = GaugeMetricFamily("freshet_view_newest_feature_ts_seconds", "newest feature_ts made durable, by "
                                   "view (UTC epoch seconds)", labels=["view", "version"])
        age = GaugeMetricFamily("freshet_view_freshness_seconds", "now minus the newest feature_ts made durable, "
                                "by view: alert when it exceeds about 1.5x the view's expected interval",
                                labels=["view", "version"])
        now = self._clock()
        for view in self._views:
            ts = s.newest_feature_ts.get(view.name)
            if ts is not None:
                newest.add_metric([view.name, str(view.version)], ts / 1000)
                age.add_metric([view.name, str(view.version)], max(0.0, now - ts / 1000))
        expected = GaugeMetricFamily("freshet_view_expected_interval_seconds", "how often the view is expected to "
                                     "get a new value (its definition's expected_interval)", labels=["view", "version"])
        for view in self._views:
            if view.expected_interval is not None:
                expected.add_metric([view.name, str(view.version)], view.expected_interval / 1000)
        yield newest
        yield age
        yield expected


def _counter(name: str, doc: str, value: Any) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class MetricsServer:
    """``prometheus_client``'s HTTP server on its own registry; a port already in use is logged, not fatal."""

    def __init__(self, stats: PipelineStats, views: list[FeatureView], *, port: int, host: str = "0.0.0.0",
                 mode: str = "live") -> None:
        self.registry = CollectorRegistry()
        self.registry.register(PipelineCollector(stats, views, mode=mode))
        self._server: Any = None
        try:
            self._server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            log.warning("metrics not served: port %s on %s is not available (%s); pass --metrics-port to choose "
                        "another, 0 to turn metrics off", port, host, exc.strerror or exc)
            return
        self.port = self._server.server_port
        log.info("metrics on http://%s:%s/metrics", host, self.port)

    @property
    def serving(self) -> bool:
        return self._server is not None

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
