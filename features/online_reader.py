"""Read feature values back from Redis: one round trip for many entities and views.

Values come back typed (per the view's output types) with ``feature_ts`` and
age, so a caller knows how fresh they are. A missing entity gives ``None``
values, not an error; a value older than the view's TTL is flagged stale.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from features.definitions import FeatureView
from features.errors import OnlineStoreError
from features.online_layout import (
    OFFSET_FIELD,
    TS_FIELD,
    WINDOW_END_FIELD,
    WINDOW_START_FIELD,
    decode_value,
    online_key,
)


@dataclass(frozen=True)
class OnlineValue:
    view: str
    version: int
    entity: Any
    features: dict[str, Any]
    feature_ts: int | None
    window_start: int | None
    window_end: int | None
    source_offset: int | None
    age_ms: int | None
    stale: bool

    @property
    def found(self) -> bool:
        return self.feature_ts is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "view": self.view, "version": self.version, "entity": self.entity,
            "features": self.features, "feature_ts": self.feature_ts,
            "window_start": self.window_start, "window_end": self.window_end,
            "age_ms": self.age_ms, "stale": self.stale, "found": self.found,
        }


_CASTS: dict[str, Callable[[Any], Any]] = {"int": int, "float": float, "str": str, "bool": bool}


class OnlineReader:
    def __init__(self, url: str, *, clock: Callable[[], float] = time.time) -> None:
        self._client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._clock = clock

    def read(self, views: Sequence[FeatureView], entities: Sequence[Any]) -> list[OnlineValue]:
        """Every (view, entity) pair, views outermost, in one pipelined round trip."""
        pipe = self._client.pipeline(transaction=False)
        pairs = [(v, e) for v in views for e in entities]
        for view, entity in pairs:
            pipe.hgetall(online_key(view.name, view.version, entity))
        try:
            replies = pipe.execute()
        except redis.RedisError as exc:
            raise OnlineStoreError(f"cannot read from Redis: {exc}") from exc
        now_ms = int(self._clock() * 1000)
        return [self._decode(view, entity, reply, now_ms) for (view, entity), reply in zip(pairs, replies, strict=True)]

    def _decode(self, view: FeatureView, entity: Any, raw: dict[bytes, bytes], now_ms: int) -> OnlineValue:
        types = view.feature_types()
        if not raw:
            return OnlineValue(view.name, view.version, entity, {n: None for n in types}, None, None, None,
                               None, None, False)
        fields = {k.decode(): v for k, v in raw.items()}
        features = {}
        for name, kind in types.items():
            value = decode_value(fields.get(name))
            features[name] = None if value is None else _CASTS[kind](value)
        ts = int(fields[TS_FIELD])
        age = now_ms - ts
        return OnlineValue(
            view.name, view.version, entity, features, ts,
            _int_or_none(fields.get(WINDOW_START_FIELD)), _int_or_none(fields.get(WINDOW_END_FIELD)),
            _int_or_none(fields.get(OFFSET_FIELD)), age, age > view.ttl,
        )

    def close(self) -> None:
        self._client.close()


def _int_or_none(raw: bytes | None) -> int | None:
    return None if raw is None else int(raw)
