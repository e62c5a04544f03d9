"""Exit codes of the CLI, in-process: 1 a check failed, 2 usage, 3 a runtime failure."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from freshet.cli import main

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "fraud")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_validate_ok_is_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--repo", EXAMPLE]) == 0
    assert "ok: 3 view(s) valid" in capsys.readouterr().out


def test_validate_of_an_invalid_definition_is_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "views.yaml").write_text("views:\n  - name: x\n    version: 1\n")
    assert main(["validate", "--repo", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "FeatureView 'x'" in err and "window: Field required" in err


def test_validate_of_a_missing_directory_is_usage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--repo", str(tmp_path / "nope")]) == 2
    assert "is not a directory" in capsys.readouterr().err


def test_bad_flag_values_are_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", "--repo", EXAMPLE, "--view", "card_spend_5m", "--workers", "0"]) == 2
    assert "--workers 0 is out of range: allowed 1 to 64" in capsys.readouterr().err
    with pytest.raises(SystemExit) as parsed:
        main(["replay", "--repo", EXAMPLE, "--no-such-flag"])
    assert parsed.value.code == 2


def test_version_prints_the_installed_version_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"freshet {version('freshet')}"


def test_unknown_view_is_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["get", "--repo", EXAMPLE, "--view", "nope", "--redis-url",
                 f"redis://127.0.0.1:{_closed_port()}/0", "card-1"]) == 2
    assert "unknown view 'nope'" in capsys.readouterr().err


def test_unreachable_redis_is_a_runtime_failure(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["get", "--repo", EXAMPLE, "--view", "card_spend_5m", "--redis-url",
                 f"redis://127.0.0.1:{_closed_port()}/0", "card-1"])
    assert code == 3
    assert "127.0.0.1" in capsys.readouterr().err
