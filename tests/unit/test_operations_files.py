"""Prometheus config, alert rules and the Grafana dashboard parse, and name only metrics Freshet exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from freshet.features.registry import Registry
from freshet.pipelines.metrics import PipelineCollector
from freshet.pipelines.stats import PipelineStats
from freshet.serve import ServerMetrics

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
METRIC = re.compile(r"\b(freshet_[a-z0-9_]+)\b")
PROMQL_WORDS = {"freshet_pipeline"}  # job names are not metrics


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((INFRA / "prometheus" / "alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dash = json.loads((INFRA / "grafana" / "dashboards" / "freshet.json").read_text())
    return [t["expr"] for panel in dash["panels"] for t in panel["targets"]]


def exported_names() -> set[str]:
    """Sample names the pipeline and the server export (the collectors their /metrics endpoints serve)."""
    stats = PipelineStats()
    stats.read, stats.invalid["bad_json"], stats.late["card_spend_5m"] = 3, 1, 1
    stats.newest_feature_ts["card_spend_5m"] = 1
    stats.lag_by_partition[("t", 0)] = 0
    views = list(Registry.load(ROOT / "examples" / "fraud").views.values())
    metrics = ServerMetrics()
    metrics.requests.labels("/features", "200").inc()
    metrics.latency.observe(0.001)
    for gauge in (metrics.mismatch, metrics.compared, metrics.checked_at):
        gauge.labels("card_spend_5m", "1").set(0)
    texts = [generate_latest(_registry(PipelineCollector(stats, views, mode="live"))).decode(),
             metrics.render({("card_spend_5m", 1): True}).decode()]
    return {s.name for text in texts for family in text_string_to_metric_families(text) for s in family.samples}


def _registry(collector: PipelineCollector):  # type: ignore[no-untyped-def]
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(collector)
    return registry


def test_files_parse_and_reference_each_other() -> None:
    config = yaml.safe_load((INFRA / "prometheus" / "prometheus.yml").read_text())
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert {job["job_name"] for job in config["scrape_configs"]} == {"freshet-pipeline", "freshet-serve"}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"prometheus", "grafana", "serve", "pipeline"} <= set(compose)
    assert "--metrics-port" in compose["pipeline"]["command"] and "0.0.0.0" in compose["pipeline"]["command"]
    for mount in [*compose["prometheus"]["volumes"], *compose["grafana"]["volumes"]]:
        assert (ROOT / mount.split(":")[0]).exists(), mount
    for path in (INFRA / "grafana" / "provisioning").rglob("*.yml"):
        assert yaml.safe_load(path.read_text())["apiVersion"] == 1
    rules = yaml.safe_load((INFRA / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            assert rule["alert"].startswith("Freshet") and rule["annotations"]["summary"]
            assert rule["expr"].count("(") == rule["expr"].count(")"), rule["alert"]


def test_every_expression_is_valid_promql() -> None:
    """promtool is not installable here (a Go binary); the same parser rules, from promql-parser."""
    import promql_parser

    for expr in [*rule_expressions(), *dashboard_expressions()]:
        promql_parser.parse(expr)


def test_every_metric_in_alerts_and_dashboard_is_exported() -> None:
    exported = exported_names()
    for expr in [*rule_expressions(), *dashboard_expressions()]:
        for name in set(METRIC.findall(expr)) - PROMQL_WORDS:
            assert name in exported, (name, expr)


def test_counters_never_go_down_when_the_run_rewinds() -> None:
    stats = PipelineStats()
    views = list(Registry.load(ROOT / "examples" / "fraud").views.values())
    registry = _registry(PipelineCollector(stats, views, mode="live"))

    def read() -> float:
        text = generate_latest(registry).decode()
        return next(s.value for f in text_string_to_metric_families(text) for s in f.samples
                    if s.name == "freshet_events_read_total")

    stats.read = 100
    stats.mark()
    stats.read = 150
    assert read() == 150
    stats.rewind()  # backpressure: back to the last commit, the 50 are read again
    assert stats.read == 100 and read() == 150
    stats.read = 170
    assert read() == 170
