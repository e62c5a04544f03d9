"""The HTTP API's OpenAPI document is valid and true to the server: every body the documented schema
allows is accepted by the server's validation, and every body the server accepts is documented.

The document and the validation come from the same app (``freshet.serve.create_app``); no Redis is
reached here (the client is built, never called), only the request layer is exercised.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate as validate_openapi
from pydantic import ValidationError

from freshet.features.online import AsyncOnlineClient
from freshet.features.registry import Registry
from freshet.serve import Limits, create_app, describe, request_model

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fraud"
LIMITS = Limits(max_entities=5, max_key_length=12, max_features=4)
VIEWS = Registry.load(EXAMPLE).views
APP = create_app(AsyncOnlineClient("redis://127.0.0.1:9/0", VIEWS), VIEWS, limits=LIMITS)
DOC = APP.openapi()
MODEL = request_model(LIMITS)


def _request_schema() -> dict[str, Any]:
    schema = DOC["paths"]["/features"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    return {**schema, "components": DOC.get("components", {})}


SCHEMA = _request_schema()


def _accepted(body: Any) -> bool:
    try:
        MODEL.model_validate_json(json.dumps(body))
    except ValidationError:
        return False
    return True


def _documented(body: Any) -> bool:
    try:
        jsonschema.validate(body, SCHEMA)
    except jsonschema.ValidationError:
        return False
    return True


def test_the_document_is_valid_openapi() -> None:
    validate_openapi(DOC)
    assert DOC["openapi"].startswith("3.")
    post = DOC["paths"]["/features"]["post"]
    assert {"200", "400", "401", "408", "413", "503"} <= set(post["responses"])
    for path in ("/healthz", "/readyz", "/metrics"):
        assert "get" in DOC["paths"][path]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=15),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12)
references = st.sampled_from(["card_spend_5m", "card_spend_5m:txn_count", "card_spend_1h@1",
                              "card_activity_10m@1:txn_count_10m", "bad name", "v@x", ":f", "", "a@1:b:c"])
bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"entities": st.lists(json_values, max_size=7),
                           "features": st.lists(references | json_values, max_size=6)},
                          optional={"extra": json_values}),
)


# bodies near the documented shape: most are valid, the rest break one rule at a time
near = st.fixed_dictionaries({
    "entities": st.lists(st.text(max_size=14) | st.integers() | st.floats(allow_nan=False) | st.booleans(),
                         max_size=7),
    "features": st.lists(references, max_size=6)},
    optional={"at": st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=70)})


@settings(max_examples=800, deadline=None)
@given(st.one_of(bodies, near))
def test_documented_if_and_only_if_accepted(body: Any) -> None:
    assert _accepted(body) == _documented(body), body


def test_the_generators_reach_both_sides() -> None:
    assert _accepted({"entities": ["card-1", 7], "features": ["card_spend_5m", "card_spend_1h@1:txn_count_1h"]})
    assert _accepted({"entities": ["card-1"], "features": ["card_spend_5m"], "at": "2026-11-22T12:00:00Z"})
    assert _documented({"entities": ["card-1"], "features": ["card_spend_5m"], "at": 1_700_000_000_000})
    assert not _accepted({"entities": ["card-1"], "features": ["card_spend_5m"], "at": True})
    assert not _documented({"entities": [], "features": ["card_spend_5m"]})


def test_rejections_name_the_bad_value() -> None:
    def reason(text: str) -> str:
        try:
            MODEL.model_validate_json(text)
        except ValidationError as exc:
            return describe(exc, LIMITS)
        raise AssertionError(f"accepted: {text}")

    assert reason('{"entities": ["a","b","c","d","e","f"], "features": ["v"]}') == "6 entities is over the limit of 5"
    assert "over the limit of 12" in reason('{"entities": ["' + "x" * 13 + '"], "features": ["v"]}')
    assert "deeply" in reason("[" * 5000 + "]" * 5000)
    assert "not valid text" in reason('{"entities": ["\\ud800"], "features": ["v"]}')
    assert reason('{"entities": [true], "features": ["v"]}') == "entity True must be a string or an integer"
    assert "feature 'a b' is not" in reason('{"entities": ["e"], "features": ["a b"]}')
    assert reason('{"entities": ["e"], "features": ["v"], "when": 1}').startswith("unknown field 'when'")
    assert reason('{"entities": ["e"], "features": ["v"], "at": -1}').startswith("at -1 is not an instant")
    assert reason('{"entities": ["e"], "features": ["v"], "at": ""}').startswith("at '' is not an instant")
    assert reason('{"features": ["v"]}').startswith("'entities' is missing")
    assert reason("[1]").startswith("body must be an object")
    assert reason("{").startswith("body is not JSON")
