"""Loading repositories (YAML and Python), fingerprints and freshet.lock, via the API and the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from freshet.cli import main
from freshet.features.errors import DefinitionError, FingerprintError, RepositoryError
from freshet.features.registry import Registry, fingerprint

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fraud"

ISSUE_YAML = """\
sources:
  - name: transactions
    topic: transactions
    partitions: 4
    key: card_id
    timestamp: ts
    schema: {card_id: str, amount: float, merchant: str, country: str, ts: int}
views:
  - name: card_spend_5m
    version: 1
    source: transactions
    window: {type: tumbling, size: 5m}
    grace: 30s
    emit: final
    ttl: 1h
    aggregations:
      - {function: count, name: txn_count}
      - {function: sum, column: amount, name: amount_sum}
"""


def write_repo(tmp_path: Path, text: str = ISSUE_YAML) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    (repo / "features.yaml").write_text(text)
    return repo


def test_issue_yaml_form_loads(tmp_path: Path) -> None:
    reg = Registry.load(write_repo(tmp_path))
    view = reg.view("card_spend_5m")
    assert view.window.size == 300_000 and view.grace == 30_000 and view.ttl == 3_600_000
    assert view.feature_names() == ["txn_count", "amount_sum"]
    assert reg.topics() == {"transactions": 4}


def test_example_repository_has_the_fraud_views() -> None:
    reg = Registry.load(EXAMPLE)
    assert set(reg.views) >= {"card_spend_5m", "card_spend_1h", "card_activity_10m"}
    assert reg.view("card_spend_1h").window.describe() == "hopping 1h every 5m"
    assert reg.view("card_activity_10m").emit == "current"
    assert {a.function for a in reg.view("card_activity_10m").aggregations} == {"count", "count_distinct"}


def test_python_and_yaml_give_the_same_fingerprint(tmp_path: Path) -> None:
    yaml_view = Registry.load(write_repo(tmp_path)).view("card_spend_5m")
    py_repo = tmp_path / "py"
    py_repo.mkdir()
    (py_repo / "defs.py").write_text(
        "from freshet import Source, FeatureView, TumblingWindow, Aggregation\n"
        "src = Source(name='transactions', topic='transactions', partitions=4, key='card_id', timestamp='ts',\n"
        "    schema={'card_id': str, 'amount': float, 'merchant': str, 'country': str, 'ts': int})\n"
        "v = FeatureView(name='card_spend_5m', source=src, window=TumblingWindow(size=300_000), grace='30s',\n"
        "    ttl='1h', owner='someone else', aggregations=[Aggregation(function='count', name='txn_count'),\n"
        "    Aggregation(function='sum', column='amount', name='amount_sum')])\n"
    )
    py_view = Registry.load(py_repo).view("card_spend_5m")
    assert fingerprint(py_view) == fingerprint(yaml_view)


def test_fingerprint_ignores_prose_but_not_semantics(tmp_path: Path) -> None:
    base = Registry.load(write_repo(tmp_path)).view("card_spend_5m")
    prose = base.model_copy(update={"owner": "x", "description": "y", "tags": {"a": "b"}})
    assert fingerprint(prose) == fingerprint(base)
    for old, new in (("size: 5m", "size: 10m"), ("grace: 30s", "grace: 1m"), ("emit: final", "emit: current"),
                     ("column: amount", "column: amount_cents"), ("amount: float", "amount: int")):
        text = ISSUE_YAML.replace(old, new)
        if "amount_cents" in new:
            text = text.replace("amount: float", "amount: float, amount_cents: float")
        changed = Registry.load(write_repo(tmp_path, text)).view("card_spend_5m")
        assert fingerprint(changed) != fingerprint(base), (old, new)
    ttl_only = Registry.load(write_repo(tmp_path, ISSUE_YAML.replace("ttl: 1h", "ttl: 2h"))).view("card_spend_5m")
    assert fingerprint(ttl_only) == fingerprint(base)


def test_duplicate_view_names_are_rejected(tmp_path: Path) -> None:
    repo = write_repo(tmp_path)
    (repo / "again.yaml").write_text(ISSUE_YAML.split("views:")[1].join(["views:", ""]))
    with pytest.raises(RepositoryError, match="duplicate view name 'card_spend_5m'"):
        Registry.load(repo)


def test_unknown_source_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError, match="names source 'payments'"):
        Registry.load(write_repo(tmp_path, ISSUE_YAML.replace("source: transactions", "source: payments")))
    with pytest.raises(RepositoryError, match="not valid YAML"):
        Registry.load(write_repo(tmp_path, "views: [unclosed"))
    with pytest.raises(RepositoryError, match="unknown section"):
        Registry.load(write_repo(tmp_path, "featurez: []\n"))
    with pytest.raises(RepositoryError, match="not a directory"):
        Registry.load(tmp_path / "missing")


def test_lock_refuses_a_change_without_a_version_bump(tmp_path: Path) -> None:
    repo = write_repo(tmp_path)
    reg = Registry.load(repo)
    assert [c.status for c in reg.write_lock()] == ["new"]
    assert [c.status for c in Registry.load(repo).check_lock()] == ["locked"]
    write_repo(tmp_path, ISSUE_YAML.replace("size: 5m", "size: 10m"))
    with pytest.raises(FingerprintError, match="bump the version to 2"):
        Registry.load(repo).require_lock_consistent()
    with pytest.raises(FingerprintError):
        Registry.load(repo).write_lock()
    write_repo(tmp_path, ISSUE_YAML.replace("size: 5m", "size: 10m").replace("version: 1", "version: 2"))
    checks = Registry.load(repo).write_lock()
    assert [(c.version, c.status) for c in checks] == [(2, "new")]
    assert set(Registry.load(repo).read_lock()["card_spend_5m"]) == {"1", "2"}


def test_cli_validate_lists_views_and_fingerprints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--repo", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    reg = Registry.load(EXAMPLE)
    for view in reg.views.values():
        assert view.name in out and fingerprint(view) in out


def test_cli_validate_rejects_step_larger_than_size(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = write_repo(tmp_path, ISSUE_YAML.replace("{type: tumbling, size: 5m}", "{type: hopping, size: 5m, step: 10m}"))
    assert main(["validate", "--repo", str(repo)]) == 1
    err = capsys.readouterr().err
    assert "step 10m" in err and "size 5m" in err


def test_cli_lock_then_edit_without_bump_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    repo = tmp_path / "fraud"
    shutil.copytree(EXAMPLE, repo)
    (repo / "freshet.lock").unlink(missing_ok=True)
    assert main(["lock", "--repo", str(repo)]) == 0
    assert main(["validate", "--repo", str(repo)]) == 0
    spend = repo / "spend.yaml"
    spend.write_text(spend.read_text().replace("grace: 30s", "grace: 45s"))
    capsys.readouterr()
    assert main(["validate", "--repo", str(repo)]) == 1
    err = capsys.readouterr().err
    assert "card_spend_5m" in err and "bump the version" in err
    assert main(["lock", "--repo", str(repo)]) == 2
