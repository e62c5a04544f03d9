"""Pins the one Quix Streams method Freshet wraps (pipelines/broker_quirks.py), so an upgrade that changes it fails here."""

from __future__ import annotations

import inspect

import quixstreams
from quixstreams.kafka.consumer import BaseConsumer

from freshet.pipelines import broker_quirks


def test_quix_version_is_the_tested_minor() -> None:
    assert quixstreams.__version__.startswith("3.28."), quixstreams.__version__


def test_wrapped_method_keeps_its_signature() -> None:
    params = list(inspect.signature(BaseConsumer.get_watermark_offsets).parameters)
    assert params == ["self", "partition", "timeout", "cached"]


def test_the_wrapper_is_installed_only_for_tansu(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    original = BaseConsumer.get_watermark_offsets
    monkeypatch.setattr(broker_quirks, "is_tansu", lambda _config: False)
    assert broker_quirks.correct_watermarks_on_tansu({"bootstrap.servers": "127.0.0.1:1"}) is None
    assert BaseConsumer.get_watermark_offsets is original
