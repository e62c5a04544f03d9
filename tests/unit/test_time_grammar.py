"""One time grammar: event times, replay --from/--to, materialize --since and training-set labels agree."""

from __future__ import annotations

import pyarrow as pa
import pytest

from freshet.features.durations import parse_event_time_ms
from freshet.features.errors import OfflineStoreError, ReplayUsageError
from freshet.features.training import _text_to_ms
from freshet.replay.plan import parse_time_spec

T = 1_795_334_400_000  # 2026-11-22T08:00:00Z
FORMS = {
    "2026-11-22T08:00:00Z": T,
    "2026-11-22T08:00:00": T,  # naive is UTC
    "2026-11-22T10:00:00+02:00": T,
    "2026-11-22T08:00:00.250Z": T + 250,
    "2026-11-22 08:00:00": T,
    str(T): T,
}


@pytest.mark.parametrize(("text", "ms"), list(FORMS.items()))
def test_every_reader_of_times_agrees(text: str, ms: int) -> None:
    assert parse_event_time_ms(text) == ms
    assert parse_time_spec(text, "--from") == ms
    assert _text_to_ms(pa.array([text]), "labels.ts").to_pylist() == [ms]


def test_a_label_column_may_mix_forms_and_hold_nulls() -> None:
    column = pa.array([*FORMS, None])
    assert _text_to_ms(column, "labels.ts").to_pylist() == [*FORMS.values(), None]


def test_bad_times_are_named() -> None:
    with pytest.raises(ReplayUsageError, match="--to 'yesterday' is not 'earliest'/'end', epoch milliseconds"):
        parse_time_spec("yesterday", "--to")
    with pytest.raises(OfflineStoreError, match="labels.ts: timestamp 'noon' is neither"):
        _text_to_ms(pa.array(["2026-11-22T08:00:00Z", "noon"]), "labels.ts")
    assert parse_time_spec("earliest", "--from") is None and parse_time_spec("end", "--to") is None
