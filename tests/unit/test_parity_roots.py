"""`freshet parity` against a root that holds no log of the view says so instead of counting every row missing."""

from __future__ import annotations

from pathlib import Path

import pytest

from freshet.features.errors import ConfigError
from freshet.features.offline_layout import view_dir
from freshet.replay.parity import compare
from tests.unit.test_training_set import VIEW, write_log


def test_a_root_without_the_view_is_named(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_log(a, VIEW, [("c1", 1_000, 0, 1), ("c2", 2_000, 1, 1)])
    b.mkdir()
    with pytest.raises(ConfigError, match=f"no log of view 'spend' under {b}: point --a/--b"):
        compare("spend", a, b)
    with pytest.raises(ConfigError, match=f"under {b} nor {tmp_path / 'c'}"):
        compare("spend", b, tmp_path / "c")
    assert compare("spend", a, a).equal
    # the view's directory (or one version's) works as a root too
    assert compare("spend", a / "spend", view_dir(a, VIEW)).equal


def test_an_empty_log_of_the_view_is_compared(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_log(a, VIEW, [("c1", 1_000, 0, 1)])
    Path(view_dir(b, VIEW)).mkdir(parents=True)
    report = compare("spend", a, b)
    assert len(report.missing) == 1 and not report.extra and not report.equal
