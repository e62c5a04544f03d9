"""`freshet drift`: same distribution -> PSI < 0.1; amounts x3 -> PSI > 0.25 and exit 1; the HTML has the plots."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from freshet.cli import main
from freshet.features.drift import feature_drift, psi_from_shares, quantile_edges
from freshet.features.offline_layout import date_of, part_path, view_schema
from freshet.features.registry import Registry

DAY = 86_400_000
START = 1_790_000_000_000
REPO_YAML = """
sources:
  - {name: tx, topic: tx, key: card_id, timestamp: ts, schema: {card_id: str, amount: float, merchant: str, ts: int}}
views:
  - name: spend
    version: 1
    source: tx
    window: {type: tumbling, size: 1h}
    aggregations:
      - {function: sum, column: amount, name: total}
      - {function: count, name: n}
      - {function: last, column: merchant, name: last_merchant}
"""


def write_period(root: Path, view, start: int, days: int, seed: int, scale: float = 1.0) -> None:
    rng = random.Random(seed)
    rows = []
    for i in range(days * 400):
        ts = start + i * (days * DAY // (days * 400))
        rows.append({"card_id": f"c{rng.randrange(300)}", "feature_ts": ts, "window_start": ts - 3_600_000,
                     "window_end": ts, "total": rng.lognormvariate(3, 1) * scale, "n": rng.randrange(1, 8),
                     "last_merchant": f"m{min(int(rng.paretovariate(1.5)), 30)}", "source_partition": 0,
                     "source_offset": i + seed * 1_000_000, "produced_at": ts})
    by_date: dict[str, list[dict]] = {}
    for r in rows:
        by_date.setdefault(date_of(r["feature_ts"]), []).append(r)
    for date, rs in by_date.items():
        path = Path(part_path(root, view, date, seed, rs[0]["source_offset"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rs, schema=view_schema(view)), path)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "views.yaml").write_text(REPO_YAML)
    return tmp_path / "repo"


def period(a: int, b: int) -> str:
    return f"{a}..{b}"


def test_same_distribution_is_stable_and_a_shift_drifts(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    view = Registry.load(repo).view("spend")
    root = tmp_path / "offline"
    write_period(root, view, START, 7, seed=1)
    write_period(root, view, START + 7 * DAY, 7, seed=2)
    write_period(root, view, START + 14 * DAY, 7, seed=3, scale=3.0)  # amounts x3
    monkeypatch.setenv("FRESHET_OFFLINE_ROOT", str(root))
    ref = period(START, START + 7 * DAY)

    assert main(["drift", "--repo", str(repo), "--view", "spend", "--reference", ref,
                 "--current", period(START + 7 * DAY, START + 14 * DAY), "--json"]) == 0
    same = {f["feature"]: f for f in json.loads(capsys.readouterr().out)["features"]}
    assert set(same) == {"total", "n", "last_merchant"}
    assert all(f["psi"] < 0.1 and f["verdict"] == "stable" for f in same.values()), same
    assert same["last_merchant"]["kind"] == "categorical" and same["total"]["kind"] == "numeric"
    assert same["total"]["reference_n"] == same["total"]["current_n"] == 2800

    report = tmp_path / "drift.html"
    code = main(["drift", "--repo", str(repo), "--view", "spend", "--reference", ref,
                 "--current", f"{START + 14 * DAY}..", "--html", str(report)])
    out, err = capsys.readouterr()
    assert code == 1 and "drift (PSI > 0.25): total" in err
    line = next(x for x in out.splitlines() if x.startswith("total"))
    assert float(line.split()[2]) > 0.25 and "drift" in line
    assert next(x for x in out.splitlines() if x.startswith("n ")).split()[3] == "stable"
    text = report.read_text()
    assert text.count("<svg") == 3 and "PSI" in text and "<script" not in text


def test_reference_from_a_training_set_and_errors(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    view = Registry.load(repo).view("spend")
    root = tmp_path / "offline"
    write_period(root, view, START, 7, seed=1)
    monkeypatch.setenv("FRESHET_OFFLINE_ROOT", str(root))
    training = tmp_path / "train.parquet"
    rng = random.Random(9)
    pq.write_table(pa.table({"spend__total": [rng.lognormvariate(3, 1) for _ in range(2000)],
                             "n": [rng.randrange(1, 8) for _ in range(2000)],
                             "last_merchant": [f"m{min(int(rng.paretovariate(1.5)), 30)}" for _ in range(2000)]}),
                   training)
    assert main(["drift", "--repo", str(repo), "--view", "spend", "--reference-file", str(training),
                 "--current", f"{START}..", "--json"]) == 0
    assert all(f["psi"] < 0.1 for f in json.loads(capsys.readouterr().out)["features"])
    assert main(["drift", "--repo", str(repo), "--view", "spend", "--reference", "yesterday",
                 "--current", f"{START}.."]) == 2
    assert "--reference 'yesterday' is not FROM..TO" in capsys.readouterr().err
    assert main(["drift", "--repo", str(repo), "--view", "spend", "--reference", f"{START + 30 * DAY}..",
                 "--current", f"{START}.."]) == 2
    assert "no reference values of view 'spend' v1" in capsys.readouterr().err


def test_psi_arithmetic() -> None:
    assert psi_from_shares([0.5, 0.5], [0.5, 0.5]) == 0
    assert psi_from_shares([0.5, 0.5], [0.9, 0.1]) == pytest.approx(0.4 * 0.5878 + 0.4 * 1.6094, rel=1e-3)
    assert quantile_edges([1, 1, 1, 1], 10) == [1]  # one value: "<= 1" and "> 1"
    d = feature_drift("x", [1.0] * 10, [1.0] * 10)
    assert d.bins == ["<= 1", "> 1"] and d.psi == 0 and "binned by value" in d.notes[0]
    # a constant or zero-inflated reference still shows a shift
    assert feature_drift("x", [0] * 1000, [50] * 1000).verdict == "drift"
    assert feature_drift("x", [0] * 950 + list(range(1, 51)), [0] * 100 + [5000] * 900).verdict == "drift"
    none = feature_drift("x", [None, None], [1.0])
    assert none.reference_nulls == 2 and none.notes == ["no reference values"]
