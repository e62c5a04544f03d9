"""The wheel: one top-level package (``freshet``), the example repository inside it, a CLI that runs.

Built from this checkout with ``pip wheel --no-deps --no-build-isolation`` and unpacked into a
directory that is put first on ``PYTHONPATH`` of a child interpreter run from elsewhere, so the
child imports the wheel's files (checked), not this checkout's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(out)], check=True, capture_output=True, cwd=out, timeout=240)
    (wheel,) = out.glob("freshet-*.whl")
    target = out / "site"
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(target)
    return target


def _run(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, *args], cwd=site.parent, env=env, capture_output=True, text=True,
                          timeout=120)


def test_wheel_holds_exactly_one_top_level_package(unpacked_wheel: Path) -> None:
    (info,) = unpacked_wheel.glob("freshet-*.dist-info")
    assert (info / "top_level.txt").read_text().split() == ["freshet"]
    tops = {p.name for p in unpacked_wheel.iterdir() if not p.name.endswith(".dist-info")}
    assert tops == {"freshet"}
    for sub in ("features", "pipelines", "replay", "infra", "examples"):
        assert (unpacked_wheel / "freshet" / sub / "__init__.py").is_file(), sub
    assert (unpacked_wheel / "freshet" / "py.typed").is_file()
    assert (unpacked_wheel / "freshet" / "examples" / "fraud" / "spend.yaml").is_file()


def test_wheel_imports_and_old_names_do_not(unpacked_wheel: Path) -> None:
    done = _run(unpacked_wheel, "-c", "import freshet, freshet.pipelines.tiles as t; print(t.__file__)")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(str(unpacked_wheel)), done.stdout
    for old in ("features", "pipelines", "replay", "infra"):
        gone = _run(unpacked_wheel, "-c", f"import {old}")
        assert gone.returncode != 0 and "ModuleNotFoundError" in gone.stderr, (old, gone.stderr)


def test_wheel_cli_runs_and_loads_the_shipped_example(unpacked_wheel: Path) -> None:
    helped = _run(unpacked_wheel, "-m", "freshet", "demo", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "usage: freshet demo" in helped.stdout
    example = unpacked_wheel / "freshet" / "examples" / "fraud"
    checked = _run(unpacked_wheel, "-m", "freshet", "validate", "--repo", str(example))
    assert checked.returncode == 0, checked.stderr
    assert "ok: 3 view(s) valid" in checked.stdout
    for view in ("card_spend_5m", "card_spend_1h", "card_activity_10m"):
        assert view in checked.stdout


def test_a_repository_written_for_the_old_names_still_loads(tmp_path: Path) -> None:
    (tmp_path / "views.py").write_text(
        "from features import Aggregation, Entity, FeatureView, Source, TumblingWindow\n"
        "from features.definitions import SlidingWindow\n"
        "src = Source(name='s', topic='t', key='k', timestamp='ts', schema={'k': 'str', 'ts': 'int'})\n"
        "e = Entity(name='e', join_key='k')\n"
        "v = FeatureView(name='v', source=src, entity=e, window=TumblingWindow(size='5m'),\n"
        "                aggregations=[Aggregation(function='count', name='n')])\n"
        "w = FeatureView(name='w', source=src, entity=e, window=SlidingWindow(size='5m'),\n"
        "                aggregations=[Aggregation(function='count', name='n')])\n")
    from freshet.features.registry import Registry

    registry = Registry.load(tmp_path)
    assert sorted(registry.views) == ["v", "w"]
    assert "features" not in sys.modules or sys.modules["features"].__name__ != "freshet.features"


CLIENT_ONLY = """
import importlib.abc, sys
PIPELINE = {"quixstreams", "rocksdict", "duckdb", "confluent_kafka", "fastapi", "uvicorn", "prometheus_client"}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in PIPELINE:
            raise ImportError(f"{name} is not installed in a client-only environment")
sys.meta_path.insert(0, Block())
import freshet
registry = freshet.Registry.load(sys.argv[1])
client = freshet.OnlineClient("redis://127.0.0.1:9/0", registry.views)
from freshet.features.training import get_historical_features
import pyarrow as pa
labels = pa.table({"card_id": ["c1"], "ts": [1_700_000_000_000]})
# last-event views: pyarrow's join, no DuckDB
last_event = {n: v.model_copy(update={"as_of": "last_event"}) for n, v in registry.views.items()}
table = get_historical_features(labels, ["card_spend_5m"], last_event, sys.argv[2])
assert table.column_names[:2] == ["card_id", "ts"] and table.num_rows == 1
# request-time views (the example's) need DuckDB: a clear error says so
from freshet.features.errors import OfflineStoreError
try:
    get_historical_features(labels, ["card_spend_5m"], registry.views, sys.argv[2])
except OfflineStoreError as exc:
    assert "need DuckDB (pip install duckdb)" in str(exc), exc
else:
    raise SystemExit("a request-time training set was built without DuckDB")
print("ok", sorted(registry.views))
"""


def test_reading_features_needs_only_the_client_requirements(unpacked_wheel: Path) -> None:
    """A service that reads features (requirements-client.txt) never imports the pipeline's dependencies."""
    example = unpacked_wheel / "freshet" / "examples" / "fraud"
    done = _run(unpacked_wheel, "-c", CLIENT_ONLY, str(example), str(unpacked_wheel / "no-log"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok ['card_activity_10m', 'card_spend_1h', 'card_spend_5m']")
    requirements = (unpacked_wheel / "freshet" / "infra" / "requirements-client.txt").read_text()
    assert "redis" in requirements and "quixstreams" not in requirements.split("#")[-1]
