"""`freshet run --metrics-port`: the Prometheus metrics match what the test produced, and lag falls to 0."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from freshet.infra.localstack import free_port
from tests.integration.conftest import Servers
from tests.integration.harness import cli_env, provision, redis_db
from tests.unit.test_operations_files import METRIC, PROMQL_WORDS, dashboard_expressions, rule_expressions

BASE = 1_700_000_000_000
REPO = """
sources:
  - name: tx
    topic: {topic}
    partitions: 2
    key: card_id
    timestamp: ts
    schema: {{card_id: str, amount: float, ts: int}}
views:
  - name: spend_10s
    version: 1
    source: tx
    window: {{type: tumbling, size: 10s}}
    grace: 0s
    emit: final
    ttl: 1d
    expected_interval: 10s
    aggregations:
      - {{function: count, name: n}}
  - name: recent
    version: 1
    source: tx
    window: {{type: sliding, size: 5s}}
    grace: 0s
    emit: current
    ttl: 1d
    aggregations:
      - {{function: sum, column: amount, name: total}}
"""


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_match_the_input_and_lag_reaches_zero(servers: Servers, unique: str, tmp_path: Path) -> None:
    topic = f"metrics-{unique}"
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "views.yaml").write_text(REPO.format(topic=topic))
    provision(servers, topic, 2)
    producer = Producer(servers.kafka_config())
    values: list[bytes] = [json.dumps({"card_id": "c1", "amount": 1.0, "ts": BASE + i * 1000}).encode()
                           for i in range(20)]
    values.append(json.dumps({"card_id": "c1", "amount": 1.0, "ts": BASE + 2000}).encode())  # late for [0, 10)
    values += [b"{broken", b"[also broken", json.dumps({"amount": 1.0, "ts": BASE}).encode()]
    for value in values:
        producer.produce(topic, value=value, key=b"c1", partition=0)
    assert producer.flush(30) == 0

    port = free_port()
    env = cli_env(servers, tmp_path, redis_db(servers.redis_url, 6))
    proc = subprocess.Popen([sys.executable, "-m", "freshet", "run", "--repo", str(repo), "--group", f"m-{unique}",
                             "--metrics-port", str(port), "--progress-interval", "0.5", "--commit-interval", "0.5"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while time.monotonic() < deadline:
            try:
                samples = scrape(port)
            except OSError:
                time.sleep(0.3)
                continue
            lag = [v for (name, _), v in samples.items() if name == "freshet_consumer_lag_records"]
            if samples.get(("freshet_events_read_total", ())) == len(values) and lag and sum(lag) == 0 \
                    and samples.get(("freshet_offline_rows_total", ()), 0) > 0:
                break
            time.sleep(0.3)
        else:
            raise AssertionError(f"metrics never caught up: {samples}")
        assert samples[("freshet_events_valid_total", ())] == 21
        assert samples[("freshet_events_invalid_total", (("reason", "bad_json"),))] == 2
        assert samples[("freshet_events_invalid_total", (("reason", "missing_key"),))] == 1
        assert samples[("freshet_late_events_total", (("view", "spend_10s"),))] == 1
        assert samples[("freshet_late_events_total", (("view", "recent"),))] == 1
        assert samples[("freshet_values_emitted_total", (("view", "spend_10s"),))] == 1  # [0, 10) closed by t=10
        assert samples[("freshet_values_emitted_total", (("view", "recent"),))] == 20
        assert {labels for (name, labels) in samples if name == "freshet_consumer_lag_records"} >= {
            (("partition", "0"), ("topic", topic)), (("partition", "1"), ("topic", topic))}
        newest = samples[("freshet_view_newest_feature_ts_seconds", (("version", "1"), ("view", "recent")))]
        assert newest == (BASE + 19_000) / 1000
        assert samples[("freshet_view_freshness_seconds", (("version", "1"), ("view", "recent")))] > 0
        assert samples[("freshet_sink_flushes_total", (("sink", "parquet"),))] >= 1
        for sink in ("parquet", "redis"):  # values waited in each sink, observed per batch
            count = samples[("freshet_sink_write_delay_seconds_count", (("sink", sink),))]
            assert count >= 1 and samples[("freshet_sink_write_delay_seconds_bucket", (("le", "+Inf"), ("sink", sink)))] == count
        assert samples[("freshet_pipeline_info", (("mode", "live"), ("topic", topic)))] == 1
        assert samples[("freshet_view_expected_interval_seconds", (("version", "1"), ("view", "spend_10s")))] == 10
        # every pipeline metric the alert rules and the dashboard use is in this live scrape
        scraped = {name for name, _ in samples}
        serving = {"freshet_requests_total", "freshet_features_latency_seconds_bucket", "freshet_stale_values_total",
                   "freshet_online_store_marker_present", "freshet_consistency_mismatch_ratio"}
        used = {n for e in [*rule_expressions(), *dashboard_expressions()] for n in METRIC.findall(e)} - PROMQL_WORDS
        assert used - serving <= scraped, sorted(used - serving - scraped)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert f"metrics on http://127.0.0.1:{port}/metrics" in err
