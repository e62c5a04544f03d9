"""One feature-reference grammar for the online and the offline read paths."""

from __future__ import annotations

import pytest

from freshet.features import Aggregation, FeatureView, Source, TumblingWindow
from freshet.features.errors import DefinitionError
from freshet.features.online import plan_request
from freshet.features.references import parse_reference
from freshet.features.training import output_names, resolve_features

SOURCE = Source(name="tx", topic="tx", key="card_id", timestamp="ts", schema={"card_id": "str", "amount": "float",
                                                                             "ts": "int"})
SPEND = FeatureView(name="spend", version=3, source=SOURCE, window=TumblingWindow(size="5m"),
                    aggregations=[Aggregation(function="count", name="n"),
                                  Aggregation(function="sum", column="amount", name="total")])
VIEWS = {"spend": SPEND}


def test_forms() -> None:
    whole = parse_reference(VIEWS, "spend")
    assert (whole.view.version, whole.features, whole.label, whole.older) == (3, ("n", "total"), "spend", False)
    one = parse_reference(VIEWS, "spend:total")
    assert one.features == ("total",) and one.view is SPEND
    current = parse_reference(VIEWS, "spend@3:n")
    assert current.label == "spend" and not current.older
    old = parse_reference(VIEWS, "spend@1")
    assert old.view.version == 1 and old.label == "spend@1" and old.older and SPEND.version == 3


@pytest.mark.parametrize(("text", "message"), [
    ("nope:n", "unknown view 'nope' in 'nope:n'; views: spend"),
    ("spend:nope", "view 'spend' has no feature 'nope'; features: n, total"),
    ("spend@x:n", "bad version 'x' in 'spend@x:n'"),
    ("spend@4", "view 'spend' has no version 4 (in 'spend@4'): its versions are 1 to 3"),
    ("spend@0:n", "has no version 0"),
])
def test_errors_name_what_exists(text: str, message: str) -> None:
    with pytest.raises(DefinitionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_reference(VIEWS, text)
    with pytest.raises(DefinitionError):
        plan_request(VIEWS, [text])
    with pytest.raises(DefinitionError):
        resolve_features(VIEWS, [text])


def test_online_and_training_read_the_same_versions() -> None:
    texts = ["spend:n", "spend@1:total"]
    online = {(r.view.name, r.version): r.features for r in plan_request(VIEWS, texts)}
    assert online == {("spend", 3): ("n",), ("spend", 1): ("total",)}
    offline = resolve_features(VIEWS, texts)
    assert {(r.view.name, r.view.version, r.feature) for r in offline} == {("spend", 3, "n"), ("spend", 1, "total")}
    names = output_names(offline, full_feature_names=True)
    assert sorted(names.values()) == ["spend@1__total", "spend__n"]
